import { type Codec, type OutFrame, type Position } from "./codec.js";
import { type RetryPolicy } from "./retry.js";
/**
 * Where a socket stands: `closed` (before `connect`, after `close`, after a close that does
 * not reconnect, or after the retry policy gave up), `connecting`, `connected`, or
 * `retrying` (waiting before the next attempt; messages sent now are queued).
 */
export type ConnectionState = "closed" | "connecting" | "connected" | "retrying";
/** A change of state, as handed to `onState` handlers. */
export interface StateChange {
    readonly state: ConnectionState;
    /** `connecting` and `retrying`: the reconnect attempt, from 1 (0 for the first connection). */
    readonly attempt: number;
    /** `retrying`: how long until the attempt, in milliseconds. */
    readonly delayMs?: number;
    /** `retrying` and `closed`: the close code that led here (1006 when the connection failed). */
    readonly code?: number;
    /** `retrying` and `closed`: the close reason that came with `code`. */
    readonly reason?: string;
}
/** The part of the browser's `WebSocket` a CrimsonSocket uses (tests pass a stand-in). */
export interface WebSocketLike {
    readonly readyState: number;
    readonly protocol: string;
    binaryType: BinaryType;
    send(data: OutFrame): void;
    close(code?: number, reason?: string): void;
    onopen: ((event: Event) => void) | null;
    onmessage: ((event: MessageEvent) => void) | null;
    onclose: ((event: CloseEvent) => void) | null;
    onerror: ((event: Event) => void) | null;
}
/** Where to connect: a URL, or a function asked again before every attempt (a fresh token, say). */
export type Endpoint = string | URL | (() => string | URL | Promise<string | URL>);
/**
 * A request type and the type of its answer: Rust's
 * `impl CrimsonRequest for Req { type Response = Res; }`, written with the types ts-rs
 * generated: `RequestType<ChatMessage, ChatResponse>`. A socket whose `Up` is a union whose
 * members are answered with different types takes a union of them:
 * `RequestType<Who, Members> | RequestType<Say, Said>`.
 */
export interface RequestType<Req, Res> {
    /** Never set: only its type matters. */
    readonly request: Req;
    /** Never set: only its type matters. */
    readonly response: Res;
}
/** Every request type of `R` (a union of {@link RequestType}s). */
export type RequestOf<R> = R extends RequestType<infer Req, unknown> ? Req : never;
/** Every response type of `R` (a union of {@link RequestType}s). */
export type ResponseOf<R> = R extends RequestType<unknown, infer Res> ? Res : never;
/** The answer to a request `Q`: the response of each request type of `R` that `Q` is one of. */
export type ResponseTo<R, Q> = R extends RequestType<infer Req, infer Res> ? ([Q] extends [Req] ? Res : never) : never;
/** How one request is made. */
export interface RequestOptions {
    /**
     * How long to wait for the answer, in milliseconds, from the call (default 10000). Past it
     * the request fails with a {@link RequestTimeoutError}; an answer that comes later is
     * dropped.
     */
    readonly timeoutMs?: number;
    /**
     * Whether the request may reach the server more than once (default `false`). A request that
     * is not idempotent is never sent twice: asked while not connected, or cut off by a lost
     * connection before its answer, it fails with a {@link DisconnectedError}. An idempotent one
     * waits for the next connection instead, and is sent again on it if the connection it went
     * out on was lost before the answer; within its `timeoutMs` in all.
     */
    readonly idempotent?: boolean;
}
/** What an `onRequest` handler returns: the response, now or later. */
export type Answer<T> = T | PromiseLike<T>;
/** Everything a {@link CrimsonSocket} can be told. Only `url` and `codec` are required. */
export type CrimsonSocketOptions<Up, Down, R = never, S = never> = BaseOptions<Up, Down> & ([ResponseOf<R>] extends [Down] ? {
    /**
     * Decodes the answers to this socket's requests. Optional when they are `Down`
     * messages (the socket's codec decodes them then); required otherwise.
     */
    readonly responses?: Codec<never, ResponseOf<R>>;
} : {
    readonly responses: Codec<never, ResponseOf<R>>;
}) & ([ResponseOf<S>] extends [Up] ? {
    /**
     * Encodes the answers to the server's requests. Optional when they are `Up` messages
     * (the socket's codec encodes them then); required otherwise.
     */
    readonly answers?: Codec<ResponseOf<S>, unknown>;
} : {
    readonly answers: Codec<ResponseOf<S>, unknown>;
});
/** The options of every {@link CrimsonSocket}, whatever its requests. */
export interface BaseOptions<Up, Down> {
    /** The route, e.g. `ws://127.0.0.1:54321/chat`. */
    readonly url: Endpoint;
    /** How messages are encoded: `jsonCodec()` for a JSON route. */
    readonly codec: Codec<Up, Down>;
    /** Subprotocols to offer (`Sec-WebSocket-Protocol`); none by default, for the plain convention. */
    readonly protocols?: string | readonly string[];
    /**
     * Ask for the Crimson protocol (`crimson.v1`, docs/protocol.md section 3), which requests
     * and recovery after a reconnect need: the socket offers `crimson.v1.<codec>` then
     * `crimson.<codec>` (`crimson.v1.json, crimson.json` for `jsonCodec()`), before any
     * `protocols`. When the server answers `crimson.v1.*`, every frame both ways carries a
     * header line; when it answers the plain token (a route without the protocol), messages
     * flow as before, requests fail with a {@link NoProtocolError}, and nothing is recovered.
     * Default `false`.
     */
    readonly protocol?: boolean;
    /**
     * How many requests may wait for answers at once (default 1024, as crimson-client). Past
     * it, `request` fails with a {@link TooManyRequestsError}.
     */
    readonly maxOpenRequests?: number;
    /**
     * How many live publications may be held, across all streams, while the answers to the
     * `resume` frames sent after a reconnect are awaited (default 10000). Past it, the stream
     * whose publication does not fit stops waiting: what it held is delivered, in order, and
     * the gap is told to `onNotRecovered`.
     */
    readonly maxHeld?: number;
    /** How to back off between reconnects (see {@link RetryPolicy}), or `false` never to reconnect. */
    readonly retry?: RetryPolicy | false;
    /** A connection up this long (ms) starts the backoff over (default 5000). */
    readonly stableAfterMs?: number;
    /** An attempt that has not opened after this long (ms) is abandoned and counts as failed (default 10000). */
    readonly connectTimeoutMs?: number;
    /**
     * How many messages may wait while disconnected (default 256). Past that, `send` throws a
     * {@link QueueFullError} and queues nothing.
     */
    readonly maxQueued?: number;
    /**
     * Whether a close reconnects, given its code and reason. The default reconnects after every
     * close but a normal one (1000), as crimson-client does; a page that must stay in a room
     * can return `true` always.
     */
    readonly abnormalClose?: (code: number, reason: string) => boolean;
    /** Makes the WebSocket (default: the browser's `new WebSocket(url, protocols)`). */
    readonly webSocket?: (url: string, protocols: string[]) => WebSocketLike;
    /** A source of numbers in [0, 1) for the jitter (default `Math.random`). */
    readonly random?: () => number;
}
type Handler<T> = (value: T) => void;
/**
 * A WebSocket to a Crimson route whose messages are `Up` one way and `Down` the other.
 *
 * ```ts
 * const socket = new CrimsonSocket<ChatMessage, ChatResponse>({ url, codec: jsonCodec() });
 * socket.onMessage((down) => console.log(down.text));
 * socket.onState((change) => console.log(change.state));
 * socket.connect();
 * socket.send({ text: "hello" }); // queued until connected
 * ```
 *
 * Reconnects after an abnormal close or a failed attempt, with exponential backoff and
 * jitter. While it is not connected, `send` queues (in order, up to `maxQueued`); the queue
 * is written as soon as a connection opens. Every message `send` accepts is either handed to
 * the browser's WebSocket or reported in a {@link DiscardedError}: never dropped in silence.
 * A message handed to the WebSocket is sent at most once: if the connection drops before the
 * browser has written it, it is lost (the plain convention has no acks).
 *
 * With `protocol: true`, on a route with history, messages broadcast to everyone or to a room
 * are publications of a stream, with a position: after a reconnect the socket asks for what
 * it missed, and delivers it once each and in order ({@link onRecovered}), or says it cannot
 * ({@link onNotRecovered}).
 */
export declare class CrimsonSocket<Up, Down, R extends RequestType<Up, unknown> = never, S extends RequestType<Down, unknown> = never> {
    #private;
    constructor(options: CrimsonSocketOptions<Up, Down, R, S>);
    /** The current state. */
    get state(): ConnectionState;
    /** Messages waiting for a connection. */
    get queued(): number;
    /** Messages discarded so far because the socket closed before they could be sent. */
    get discarded(): number;
    /** The subprotocol the server chose ("" for none, or while not connected). */
    get protocol(): string;
    /** This socket's requests that wait for answers (sent, or waiting for a connection). */
    get openRequests(): number;
    /**
     * Where the socket stands in each stream it has had publications of (crimson.v1, a route
     * with history): the last position delivered, sorted by stream. After a reconnect the socket
     * resumes from these by itself. Empty on a plain connection; forgotten when the socket
     * reconnects to a server that does not speak crimson.v1.
     */
    get positions(): Position[];
    /** Calls `handler` with every message; returns a function that stops it. */
    onMessage(handler: Handler<Down>): () => void;
    /** Calls `handler` on every change of state; returns a function that stops it. */
    onState(handler: Handler<StateChange>): () => void;
    /**
     * Calls `handler` with what goes wrong without a caller to throw to: a frame that does not
     * decode ({@link DecodeError}), queued messages discarded ({@link DiscardedError}), the
     * retry policy giving up ({@link RetriesExhaustedError}), an endpoint that fails. Without a
     * handler, they go to `console.error`. Returns a function that stops it.
     */
    onError(handler: Handler<Error>): () => void;
    /**
     * Calls `handler` when, after a reconnect, the `count` publications of `stream` (`all`,
     * `room:<name>`) missed while away were delivered, each once and in order, before this call
     * (`count` may be 0: nothing was missed). Returns a function that stops it.
     */
    onRecovered(handler: (stream: string, count: number) => void): () => void;
    /**
     * Calls `handler` when what `stream` published while the socket was away cannot be
     * recovered: the application missed messages, and `reason` says why: the server's
     * (`history_too_short`, `expired`, `epoch_changed`, `over_limit`, `unknown_position`,
     * `unavailable`; `dropped` while connected) or the socket's own (the new connection does not
     * speak crimson.v1; too many publications held waiting for the answer; the room was left
     * before the answer). The stream goes on from its latest publication. Without a
     * handler, each is a {@link NotRecoveredError} on `onError`: never silent. Returns a
     * function that stops it.
     */
    onNotRecovered(handler: (stream: string, reason: string) => void): () => void;
    /**
     * Answers the server's requests (`session.request(..)` on the server; crimson.v1 only):
     * `handler` gets the request, a `Down` message, and returns its response (or a promise of
     * it), sent back as `res`. To refuse, throw a {@link RequestRejectedError} with a code
     * (`4000`–`4999` are the application's) and a reason; anything else thrown is answered with
     * `500` and its message. Without a handler, every request from the server is answered with
     * `err code=500` "not answered". One handler at a time: this replaces the previous one.
     * Returns a function that removes it.
     */
    onRequest(handler: (request: Down) => Answer<ResponseOf<S>>): () => void;
    /**
     * Asks the server `request` and resolves with its answer, of the type that `R` (the
     * socket's {@link RequestType}s) gives that request. Needs the Crimson protocol
     * (`protocol: true`, and a server that speaks it).
     *
     * It rejects, and the request is forgotten, with:
     * - {@link RequestRejectedError}: the server answered `err` (its `code` and `reason`);
     * - {@link RequestTimeoutError}: no answer within `timeoutMs` (default 10 s);
     * - {@link DisconnectedError}: not connected when asked, or the connection was lost before
     *   the answer (the server may or may not have had it), or the socket closed. It is not
     *   sent again behind your back; pass `idempotent: true` for one that may be (it then waits
     *   for the next connection, and is sent again on it if cut off);
     * - {@link NoProtocolError}: the server did not answer with crimson.v1;
     * - {@link TooManyRequestsError}: `maxOpenRequests` already wait;
     * - {@link SocketClosedError}: the socket is closed (before `connect`, after `close`);
     * - a {@link DecodeError}: the answer did not decode; or what the codec threw encoding it.
     */
    request<Q extends RequestOf<R>>(request: Q, options?: RequestOptions): Promise<ResponseTo<R, Q>>;
    /** Starts connecting (from `closed`; otherwise it does nothing). */
    connect(): void;
    /**
     * Sends `message` now if connected, else queues it for the next connection. Throws, and
     * neither sends nor queues, when the socket is closed ({@link SocketClosedError}), the queue
     * is full ({@link QueueFullError}), or the codec cannot encode the message.
     */
    send(message: Up): void;
    /**
     * Closes the connection with `code` and `reason` (1000 by default) and stops reconnecting.
     * Queued messages are discarded and reported in one {@link DiscardedError}; returns how many.
     */
    close(code?: number, reason?: string): number;
}
export {};
