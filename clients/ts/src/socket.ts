// CrimsonSocket<Up, Down>: a typed WebSocket to a Crimson route that stays connected.
//
// One message is one WebSocket message, as Crimson's plain convention says; frames pass
// through the codec and nothing else. With `protocol: true` the socket asks for the Crimson
// protocol (`crimson.v1`, docs/protocol.md section 3) and, when the server answers it, puts
// a header line before every frame ("frames out") and reads one from every frame ("frames
// in"): plain messages, requests both ways (`req`, `res`, `err`), and the publications of
// streams (`pub`), resumed after every reconnect (`resume`, `recovered`, `lost`).

import {
  type Codec,
  type Frame,
  type OutFrame,
  type Position,
  frameText,
  positionHeader,
  readFrame,
  textBody,
  writeFrame,
} from "./codec.js";
import {
  DecodeError,
  DisconnectedError,
  DiscardedError,
  NoProtocolError,
  NotRecoveredError,
  ProtocolError,
  QueueFullError,
  RequestRejectedError,
  RequestTimeoutError,
  RetriesExhaustedError,
  SocketClosedError,
  TooManyRequestsError,
} from "./errors.js";
import { type Outcome, MAX_STREAMS, Recovery, type Step } from "./recovery.js";
import { type ResolvedRetryPolicy, type RetryPolicy, resolveRetry, retryDelay } from "./retry.js";

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
export type CrimsonSocketOptions<Up, Down, R = never, S = never> = BaseOptions<Up, Down> &
  ([ResponseOf<R>] extends [Down]
    ? {
        /**
         * Decodes the answers to this socket's requests. Optional when they are `Down`
         * messages (the socket's codec decodes them then); required otherwise.
         */
        readonly responses?: Codec<never, ResponseOf<R>>;
      }
    : { readonly responses: Codec<never, ResponseOf<R>> }) &
  ([ResponseOf<S>] extends [Up]
    ? {
        /**
         * Encodes the answers to the server's requests. Optional when they are `Up` messages
         * (the socket's codec encodes them then); required otherwise.
         */
        readonly answers?: Codec<ResponseOf<S>, unknown>;
      }
    : { readonly answers: Codec<ResponseOf<S>, unknown> });

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
type Handlers<A extends unknown[]> = Set<(...args: A) => void>;

/** Why streams cannot be resumed on a connection whose server did not agree to crimson.v1. */
const NO_PROTOCOL = "the server did not agree to the Crimson protocol (crimson.v1)";

const OPEN = 1;
/** What a failed or dropped connection reports, as browsers do. */
const ABNORMAL = 1006;

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
export class CrimsonSocket<
  Up,
  Down,
  R extends RequestType<Up, unknown> = never,
  S extends RequestType<Down, unknown> = never,
> {
  readonly #url: Endpoint;
  readonly #codec: Codec<Up, Down>;
  readonly #responses: Codec<never, ResponseOf<R>>;
  readonly #answers: Codec<ResponseOf<S>, unknown>;
  readonly #maxOpenRequests: number;
  /** This socket's requests that wait for answers, by id. */
  readonly #pending = new Map<number, PendingRequest>();
  #nextId = 1;
  /** Whether the current connection speaks crimson.v1 (a header line on every frame). */
  #framed = false;
  /** Where the socket stands in each stream it follows (crimson.v1). */
  readonly #recovery: Recovery;
  /** Whether a publication past {@link MAX_STREAMS} streams was reported (once, until streams are forgotten). */
  #toldUnfollowed = false;
  #requestHandler: ((request: Down) => Answer<ResponseOf<S>>) | null = null;
  readonly #protocols: string[];
  readonly #retry: ResolvedRetryPolicy | null;
  readonly #stableAfterMs: number;
  readonly #connectTimeoutMs: number;
  readonly #maxQueued: number;
  readonly #abnormalClose: (code: number, reason: string) => boolean;
  readonly #makeWebSocket: (url: string, protocols: string[]) => WebSocketLike;
  readonly #random: () => number;

  readonly #messageHandlers = new Set<Handler<Down>>();
  readonly #stateHandlers = new Set<Handler<StateChange>>();
  readonly #errorHandlers = new Set<Handler<Error>>();
  readonly #recoveredHandlers: Handlers<[stream: string, count: number]> = new Set();
  readonly #notRecoveredHandlers: Handlers<[stream: string, reason: string]> = new Set();

  #state: StateChange = { state: "closed", attempt: 0 };
  #ws: WebSocketLike | null = null;
  #queue: OutFrame[] = [];
  #discarded = 0;
  /** Failed attempts in a row (0 after a stable connection). */
  #attempt = 0;
  #openedAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Bumped on every connect and close, so that a stale callback knows it is stale. */
  #generation = 0;

  constructor(options: CrimsonSocketOptions<Up, Down, R, S>) {
    this.#url = options.url;
    this.#codec = options.codec;
    // Without a codec of their own, answers are Down messages and responses Up ones: the
    // option types require one otherwise.
    this.#responses = options.responses ?? (options.codec as unknown as Codec<never, ResponseOf<R>>);
    this.#answers = options.answers ?? (options.codec as unknown as Codec<ResponseOf<S>, unknown>);
    this.#protocols = options.protocols === undefined ? [] : [options.protocols].flat();
    if (options.protocol) {
      const token = options.codec.token;
      if (!token) throw new RangeError("protocol: true needs a codec with a token (jsonCodec() is \"json\")");
      this.#protocols.unshift(`crimson.v1.${token}`, `crimson.${token}`);
    }
    this.#maxOpenRequests = options.maxOpenRequests ?? 1024;
    if (!Number.isInteger(this.#maxOpenRequests) || this.#maxOpenRequests < 1) {
      throw new RangeError(`maxOpenRequests must be a whole number above 0, not ${options.maxOpenRequests}`);
    }
    const maxHeld = options.maxHeld ?? 10000;
    if (!Number.isInteger(maxHeld) || maxHeld < 0) {
      throw new RangeError(`maxHeld must be a whole number, not ${options.maxHeld}`);
    }
    this.#recovery = new Recovery(maxHeld);
    this.#retry = options.retry === false ? null : resolveRetry(options.retry);
    this.#stableAfterMs = positive("stableAfterMs", options.stableAfterMs ?? 5000);
    this.#connectTimeoutMs = positive("connectTimeoutMs", options.connectTimeoutMs ?? 10000);
    this.#maxQueued = options.maxQueued ?? 256;
    if (!Number.isInteger(this.#maxQueued) || this.#maxQueued < 0) {
      throw new RangeError(`maxQueued must be a whole number, not ${options.maxQueued}`);
    }
    this.#abnormalClose = options.abnormalClose ?? ((code) => code !== 1000);
    this.#makeWebSocket = options.webSocket ?? ((url, protocols) => new WebSocket(url, protocols));
    this.#random = options.random ?? Math.random;
  }

  /** The current state. */
  get state(): ConnectionState {
    return this.#state.state;
  }

  /** Messages waiting for a connection. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Messages discarded so far because the socket closed before they could be sent. */
  get discarded(): number {
    return this.#discarded;
  }

  /** The subprotocol the server chose ("" for none, or while not connected). */
  get protocol(): string {
    return this.#state.state === "connected" ? (this.#ws?.protocol ?? "") : "";
  }

  /** This socket's requests that wait for answers (sent, or waiting for a connection). */
  get openRequests(): number {
    return this.#pending.size;
  }

  /**
   * Where the socket stands in each stream it has had publications of (crimson.v1, a route
   * with history): the last position delivered, sorted by stream. After a reconnect the socket
   * resumes from these by itself. Empty on a plain connection; forgotten when the socket
   * reconnects to a server that does not speak crimson.v1.
   */
  get positions(): Position[] {
    return this.#recovery.positions();
  }

  /** Calls `handler` with every message; returns a function that stops it. */
  onMessage(handler: Handler<Down>): () => void {
    return subscribe(this.#messageHandlers, handler);
  }

  /** Calls `handler` on every change of state; returns a function that stops it. */
  onState(handler: Handler<StateChange>): () => void {
    return subscribe(this.#stateHandlers, handler);
  }

  /**
   * Calls `handler` with what goes wrong without a caller to throw to: a frame that does not
   * decode ({@link DecodeError}), queued messages discarded ({@link DiscardedError}), the
   * retry policy giving up ({@link RetriesExhaustedError}), an endpoint that fails. Without a
   * handler, they go to `console.error`. Returns a function that stops it.
   */
  onError(handler: Handler<Error>): () => void {
    return subscribe(this.#errorHandlers, handler);
  }

  /**
   * Calls `handler` when, after a reconnect, the `count` publications of `stream` (`all`,
   * `room:<name>`) missed while away were delivered, each once and in order, before this call
   * (`count` may be 0: nothing was missed). Returns a function that stops it.
   */
  onRecovered(handler: (stream: string, count: number) => void): () => void {
    return subscribe(this.#recoveredHandlers, handler);
  }

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
  onNotRecovered(handler: (stream: string, reason: string) => void): () => void {
    return subscribe(this.#notRecoveredHandlers, handler);
  }

  /**
   * Answers the server's requests (`session.request(..)` on the server; crimson.v1 only):
   * `handler` gets the request, a `Down` message, and returns its response (or a promise of
   * it), sent back as `res`. To refuse, throw a {@link RequestRejectedError} with a code
   * (`4000`–`4999` are the application's) and a reason; anything else thrown is answered with
   * `500` and its message. Without a handler, every request from the server is answered with
   * `err code=500` "not answered". One handler at a time: this replaces the previous one.
   * Returns a function that removes it.
   */
  onRequest(handler: (request: Down) => Answer<ResponseOf<S>>): () => void {
    this.#requestHandler = handler;
    return () => {
      if (this.#requestHandler === handler) this.#requestHandler = null;
    };
  }

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
  request<Q extends RequestOf<R>>(request: Q, options: RequestOptions = {}): Promise<ResponseTo<R, Q>> {
    return new Promise<ResponseTo<R, Q>>((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? 10000;
      const idempotent = options.idempotent ?? false;
      if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
        throw new RangeError(`timeoutMs must be a finite number above 0, not ${timeoutMs}`);
      }
      if (this.#state.state === "closed") throw new SocketClosedError();
      const ws = this.#ws;
      const connected = this.#state.state === "connected" && ws !== null && ws.readyState === OPEN;
      if (connected && !this.#framed) throw new NoProtocolError(ws.protocol);
      if (!connected && !idempotent) {
        throw new DisconnectedError(`not connected (${this.#state.state}); only an idempotent request waits for a connection`);
      }
      if (this.#pending.size >= this.#maxOpenRequests) throw new TooManyRequestsError(this.#maxOpenRequests);
      const body = this.#codec.encode(request as unknown as Up);
      const id = this.#nextId++;
      const entry: PendingRequest = {
        body,
        idempotent,
        sent: false,
        resolve: (answer) => resolve(this.#responses.decode(answer) as ResponseTo<R, Q>),
        reject,
        timer: setTimeout(() => {
          if (this.#pending.delete(id)) reject(new RequestTimeoutError(timeoutMs));
        }, timeoutMs),
      };
      this.#pending.set(id, entry);
      if (connected) this.#sendRequest(ws, id, entry);
    });
  }

  /** Starts connecting (from `closed`; otherwise it does nothing). */
  connect(): void {
    if (this.#state.state !== "closed") return;
    this.#attempt = 0;
    void this.#open();
  }

  /**
   * Sends `message` now if connected, else queues it for the next connection. Throws, and
   * neither sends nor queues, when the socket is closed ({@link SocketClosedError}), the queue
   * is full ({@link QueueFullError}), or the codec cannot encode the message.
   */
  send(message: Up): void {
    if (this.#state.state === "closed") throw new SocketClosedError();
    // Encoded now, so that a message that cannot be encoded fails here, at its sender.
    const frame = this.#codec.encode(message);
    const ws = this.#ws;
    if (this.#state.state === "connected" && ws && ws.readyState === OPEN) {
      ws.send(this.#frame("", frame)); // frames out
      return;
    }
    if (this.#queue.length >= this.#maxQueued) throw new QueueFullError(this.#maxQueued);
    this.#queue.push(frame);
  }

  /**
   * Closes the connection with `code` and `reason` (1000 by default) and stops reconnecting.
   * Queued messages are discarded and reported in one {@link DiscardedError}; returns how many.
   */
  close(code = 1000, reason = ""): number {
    const ws = this.#detach();
    if (ws && ws.readyState <= OPEN) ws.close(code, reason);
    return this.#finish(code, reason, "the socket was closed");
  }

  async #open(): Promise<void> {
    const generation = ++this.#generation;
    this.#setState({ state: "connecting", attempt: this.#attempt });
    let url: string;
    try {
      const endpoint = typeof this.#url === "function" ? await this.#url() : this.#url;
      url = String(endpoint);
    } catch (cause) {
      if (generation !== this.#generation) return;
      this.#report(new Error(`the endpoint failed: ${(cause as Error)?.message ?? cause}`, { cause }));
      this.#closed(ABNORMAL, "the endpoint failed", false);
      return;
    }
    if (generation !== this.#generation) return; // closed while the endpoint was asked
    let ws: WebSocketLike;
    try {
      ws = this.#makeWebSocket(url, this.#protocols);
    } catch (cause) {
      // An invalid URL: trying again would fail the same way.
      this.#report(new Error(`cannot open a WebSocket to ${url}: ${(cause as Error)?.message ?? cause}`, { cause }));
      this.#finish(ABNORMAL, "invalid endpoint", "the endpoint is invalid");
      return;
    }
    this.#ws = ws;
    ws.binaryType = "arraybuffer";
    this.#timer = setTimeout(() => {
      // Closing a WebSocket that is still connecting fails it; onclose then reports 1006.
      if (generation === this.#generation && ws.readyState !== OPEN) ws.close();
    }, this.#connectTimeoutMs);
    ws.onopen = () => {
      if (generation !== this.#generation) return;
      clearTimeout(this.#timer);
      this.#openedAt = Date.now();
      this.#framed = ws.protocol.startsWith("crimson.v1.");
      // Before anything else (even what an onState handler sends): where the socket stands
      // in each stream it follows.
      if (this.#framed) {
        for (const at of this.#recovery.resumes()) {
          ws.send(writeFrame(positionHeader("resume", at), textBody("", this.#codec.frames))); // frames out
        }
      }
      this.#setState({ state: "connected", attempt: this.#attempt });
      if (generation !== this.#generation) return; // closed by an onState handler
      if (!this.#framed) {
        this.#toldUnfollowed = false;
        for (const outcome of this.#recovery.unresumable(NO_PROTOCOL)) this.#announce(outcome);
        if (generation !== this.#generation) return; // closed by a handler
      }
      const queued = this.#queue;
      this.#queue = [];
      for (const frame of queued) ws.send(this.#frame("", frame)); // frames out
      // Then the idempotent requests that waited for a connection, in the order asked.
      for (const [id, entry] of this.#pending) {
        if (entry.sent) continue;
        if (this.#framed) {
          this.#sendRequest(ws, id, entry);
        } else {
          this.#settle(id, entry)?.reject(new NoProtocolError(ws.protocol));
        }
      }
    };
    ws.onmessage = (event) => {
      if (generation !== this.#generation) return;
      this.#receive(event.data as Frame); // frames in
    };
    ws.onclose = (event) => {
      if (generation !== this.#generation) return;
      this.#detach();
      this.#recovery.connectionLost();
      this.#connectionLost(event.code);
      this.#closed(event.code, event.reason, this.#openedAt > 0);
    };
    // Every error is followed by a close event, which is where it is handled.
    ws.onerror = null;
  }

  /** `body` behind `header` on a crimson.v1 connection; as it is on a plain one. */
  #frame(header: string, body: OutFrame): OutFrame {
    return this.#framed ? writeFrame(header, body) : body;
  }

  #sendRequest(ws: WebSocketLike, id: number, entry: PendingRequest): void {
    ws.send(writeFrame(`req id=${id}`, entry.body)); // frames out
    entry.sent = true;
  }

  /** Forgets request `id` and stops its timer; returns it, or `undefined` if it was not open. */
  #settle(id: number, entry: PendingRequest | undefined = this.#pending.get(id)): PendingRequest | undefined {
    if (!entry || !this.#pending.delete(id)) return undefined;
    clearTimeout(entry.timer);
    return entry;
  }

  /**
   * The connection ended: requests sent on it fail, unless idempotent (those wait to be sent
   * again on the next connection). Never sent twice behind the caller's back.
   */
  #connectionLost(code: number): void {
    for (const [id, entry] of this.#pending) {
      if (!entry.sent) continue;
      if (entry.idempotent) {
        entry.sent = false;
      } else {
        this.#settle(id, entry)?.reject(
          new DisconnectedError(`the connection was lost (${code}) before the answer; the server may or may not have had the request`),
        );
      }
    }
  }

  #receive(frame: Frame): void {
    if (!this.#framed) {
      this.#deliver(frame);
      return;
    }
    let split;
    try {
      split = readFrame(frame);
    } catch (cause) {
      this.#report(cause instanceof Error ? cause : new ProtocolError(String(cause), frame));
      return;
    }
    switch (split.kind) {
      case "message":
        this.#deliver(split.body);
        return;
      case "sub":
        this.#apply({ deliver: [], unfollowed: this.#recovery.subscribed(split) });
        return;
      case "unsub":
        this.#apply(this.#recovery.unsubscribed(split.stream));
        return;
      case "pub":
        this.#apply(this.#recovery.publication(split, split.body));
        return;
      case "recovered":
        this.#apply(this.#recovery.recovered(split, split.count));
        return;
      case "lost":
        this.#apply(this.#recovery.lost(split, split.reason));
        return;
      case "resume":
        this.#report(new ProtocolError("crimson.v1: a `resume` from the server (it goes from client to server)", frame));
        return;
      case "res": {
        // An answer to a request no longer open (it timed out) is dropped.
        const entry = this.#settle(split.id);
        if (!entry) return;
        try {
          entry.resolve(split.body);
        } catch (cause) {
          entry.reject(cause instanceof DecodeError ? cause : new DecodeError(String(cause), split.body, { cause }));
        }
        return;
      }
      case "err":
        this.#settle(split.id)?.reject(new RequestRejectedError(split.code, frameText(split.body), split.retry));
        return;
      case "req":
        void this.#answer(split.id, split.body);
        return;
    }
  }

  /** Answers the server's request `id` (kept as the server wrote it) on this connection. */
  async #answer(id: string, body: Frame): Promise<void> {
    const ws = this.#ws;
    const generation = this.#generation;
    let frame: OutFrame;
    try {
      let request: Down;
      try {
        request = this.#codec.decode(body);
      } catch (cause) {
        throw new RequestRejectedError(400, `the request did not decode: ${(cause as Error)?.message ?? cause}`);
      }
      const handler = this.#requestHandler;
      if (!handler) throw new RequestRejectedError(500, "not answered");
      const response = await handler(request);
      let encoded: OutFrame;
      try {
        encoded = this.#answers.encode(response);
      } catch (cause) {
        throw new RequestRejectedError(500, `the response did not encode: ${(cause as Error)?.message ?? cause}`);
      }
      frame = writeFrame(`res id=${id}`, encoded);
    } catch (error) {
      const rejected = error instanceof RequestRejectedError;
      const code = rejected && Number.isInteger(error.code) && error.code >= 0 && error.code <= 65535 ? error.code : 500;
      const reason = rejected ? error.reason : String((error as Error)?.message ?? error);
      frame = writeFrame(`err id=${id} code=${code}`, textBody(cut(reason), this.#codec.frames));
    }
    // The request belongs to the connection it came on: gone with it, it needs no answer.
    if (ws && generation === this.#generation && ws.readyState === OPEN) ws.send(frame); // frames out
  }

  /** Delivers what a stream's frame gives the application, then tells how its recovery went. */
  #apply(step: Step): void {
    // All of them, even if a handler closes the socket meanwhile: the position is past them.
    for (const body of step.deliver) this.#deliver(body);
    if (step.unfollowed !== undefined && !this.#toldUnfollowed) {
      this.#toldUnfollowed = true;
      this.#report(
        new Error(
          `following ${MAX_STREAMS} streams already: publications of \`${step.unfollowed}\` (and any other new stream) are delivered, but not recovered after a reconnect`,
        ),
      );
    }
    if (step.outcome) this.#announce(step.outcome);
  }

  /** Tells the application how a stream's recovery went; a gap without a handler is an error. */
  #announce(outcome: Outcome): void {
    if (outcome.kind === "recovered") {
      emit(this.#recoveredHandlers, outcome.stream, Number(outcome.count));
    } else if (this.#notRecoveredHandlers.size > 0) {
      emit(this.#notRecoveredHandlers, outcome.stream, outcome.reason);
    } else {
      this.#report(new NotRecoveredError(outcome.stream, outcome.reason));
    }
  }

  #deliver(frame: Frame): void {
    let message: Down;
    try {
      message = this.#codec.decode(frame);
    } catch (cause) {
      this.#report(cause instanceof DecodeError ? cause : new DecodeError(String(cause), frame, { cause }));
      return;
    }
    emit(this.#messageHandlers, message);
  }

  /** The connection ended (or an attempt failed): reconnect, or close for good. */
  #closed(code: number, reason: string, wasOpen: boolean): void {
    if (wasOpen && Date.now() - this.#openedAt >= this.#stableAfterMs) this.#attempt = 0;
    this.#openedAt = 0;
    if (!this.#abnormalClose(code, reason)) {
      this.#finish(code, reason, `the server closed the connection (${code})`);
      return;
    }
    const delay = this.#retry === null ? null : retryDelay(this.#retry, this.#attempt + 1, this.#random);
    if (delay === null) {
      if (this.#retry !== null) this.#report(new RetriesExhaustedError(this.#attempt, code, reason));
      this.#finish(code, reason, "the socket stopped reconnecting");
      return;
    }
    this.#attempt += 1;
    const generation = ++this.#generation;
    this.#setState({ state: "retrying", attempt: this.#attempt, delayMs: delay, code, reason });
    this.#timer = setTimeout(() => {
      if (generation === this.#generation) void this.#open();
    }, delay);
  }

  /** Unhooks the current WebSocket (if any) so that nothing it does reaches this socket again. */
  #detach(): WebSocketLike | null {
    this.#generation += 1;
    this.#framed = false;
    clearTimeout(this.#timer);
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    return ws;
  }

  /** Closed for good: discards (and reports) the queue. Returns how many were discarded. */
  #finish(code: number, reason: string, why: string): number {
    this.#detach();
    // Positions are kept, for a later connect(); what was held waiting for a resume's answer
    // is asked for again then.
    this.#recovery.connectionLost();
    // Requests too: none outlives the socket (nor its timer).
    for (const [id, entry] of this.#pending) {
      this.#settle(id, entry)?.reject(new DisconnectedError(why));
    }
    const count = this.#queue.length;
    this.#queue = [];
    if (this.#state.state !== "closed") this.#setState({ state: "closed", attempt: this.#attempt, code, reason });
    if (count > 0) {
      this.#discarded += count;
      this.#report(new DiscardedError(count, why));
    }
    return count;
  }

  #setState(change: StateChange): void {
    this.#state = change;
    emit(this.#stateHandlers, change);
  }

  #report(error: Error): void {
    if (this.#errorHandlers.size === 0) {
      console.error("CrimsonSocket:", error);
      return;
    }
    emit(this.#errorHandlers, error);
  }
}

/** A request that waits for its answer. */
interface PendingRequest {
  /** The request, encoded (the header is put before it each time it is sent). */
  readonly body: OutFrame;
  readonly idempotent: boolean;
  /** Whether it went out on the current connection. */
  sent: boolean;
  /** Decodes the answer's body and resolves; throws when it does not decode. */
  readonly resolve: (body: Frame) => void;
  readonly reject: (error: unknown) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** At most 1 KiB of `text` (as UTF-8), as crimson-axum cuts an error's message. */
function cut(text: string): string {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= 1024) return text;
  return new TextDecoder().decode(bytes.subarray(0, 1024)).replace(/\uFFFD$/, "");
}

function subscribe<A extends unknown[]>(handlers: Handlers<A>, handler: (...args: A) => void): () => void {
  // A wrapper, so that the same function subscribed twice is called twice and stopped once.
  const entry = (...args: A): void => handler(...args);
  handlers.add(entry);
  return () => void handlers.delete(entry);
}

/** Calls every handler; one that throws is reported as uncaught and does not stop the others. */
function emit<A extends unknown[]>(handlers: Handlers<A>, ...args: A): void {
  for (const handler of [...handlers]) {
    try {
      handler(...args);
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${name} must be a finite number above 0, not ${value}`);
  }
  return value;
}
