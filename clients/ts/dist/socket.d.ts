import type { Codec, OutFrame } from "./codec.js";
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
/** Everything a {@link CrimsonSocket} can be told. Only `url` and `codec` are required. */
export interface CrimsonSocketOptions<Up, Down> {
    /** The route, e.g. `ws://127.0.0.1:54321/chat`. */
    readonly url: Endpoint;
    /** How messages are encoded: `jsonCodec()` for a JSON route. */
    readonly codec: Codec<Up, Down>;
    /** Subprotocols to offer (`Sec-WebSocket-Protocol`); none by default, for the plain convention. */
    readonly protocols?: string | readonly string[];
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
 */
export declare class CrimsonSocket<Up, Down> {
    #private;
    constructor(options: CrimsonSocketOptions<Up, Down>);
    /** The current state. */
    get state(): ConnectionState;
    /** Messages waiting for a connection. */
    get queued(): number;
    /** Messages discarded so far because the socket closed before they could be sent. */
    get discarded(): number;
    /** The subprotocol the server chose ("" for none, or while not connected). */
    get protocol(): string;
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
