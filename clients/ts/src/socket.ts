// CrimsonSocket<Up, Down>: a typed WebSocket to a Crimson route that stays connected.
//
// One message is one WebSocket message, as Crimson's plain convention says; frames pass
// through the codec and nothing else. The seam for the opt-in `crimson.v1` protocol (resume,
// requests) is `protocols` and the two places marked "frames in" and "frames out" below: a
// protocol layer will sit there, between the WebSocket and the codec.

import type { Codec, Frame, OutFrame } from "./codec.js";
import { DecodeError, DiscardedError, QueueFullError, RetriesExhaustedError, SocketClosedError } from "./errors.js";
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
 */
export class CrimsonSocket<Up, Down> {
  readonly #url: Endpoint;
  readonly #codec: Codec<Up, Down>;
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

  constructor(options: CrimsonSocketOptions<Up, Down>) {
    this.#url = options.url;
    this.#codec = options.codec;
    this.#protocols = options.protocols === undefined ? [] : [options.protocols].flat();
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
      ws.send(frame); // frames out
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
      this.#setState({ state: "connected", attempt: this.#attempt });
      const queued = this.#queue;
      this.#queue = [];
      for (const frame of queued) ws.send(frame); // frames out
    };
    ws.onmessage = (event) => {
      if (generation !== this.#generation) return;
      this.#receive(event.data as Frame); // frames in
    };
    ws.onclose = (event) => {
      if (generation !== this.#generation) return;
      this.#detach();
      this.#closed(event.code, event.reason, this.#openedAt > 0);
    };
    // Every error is followed by a close event, which is where it is handled.
    ws.onerror = null;
  }

  #receive(frame: Frame): void {
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
    clearTimeout(this.#timer);
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    return ws;
  }

  /** Closed for good: discards (and reports) the queue. Returns how many were discarded. */
  #finish(code: number, reason: string, why: string): number {
    this.#detach();
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

function subscribe<T>(handlers: Set<Handler<T>>, handler: Handler<T>): () => void {
  // A wrapper, so that the same function subscribed twice is called twice and stopped once.
  const entry: Handler<T> = (value) => handler(value);
  handlers.add(entry);
  return () => void handlers.delete(entry);
}

/** Calls every handler; one that throws is reported as uncaught and does not stop the others. */
function emit<T>(handlers: Set<Handler<T>>, value: T): void {
  for (const handler of [...handlers]) {
    try {
      handler(value);
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
