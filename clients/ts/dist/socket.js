// CrimsonSocket<Up, Down>: a typed WebSocket to a Crimson route that stays connected.
//
// One message is one WebSocket message, as Crimson's plain convention says; frames pass
// through the codec and nothing else. The seam for the opt-in `crimson.v1` protocol (resume,
// requests) is `protocols` and the two places marked "frames in" and "frames out" below: a
// protocol layer will sit there, between the WebSocket and the codec.
import { DecodeError, DiscardedError, QueueFullError, RetriesExhaustedError, SocketClosedError } from "./errors.js";
import { resolveRetry, retryDelay } from "./retry.js";
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
export class CrimsonSocket {
    #url;
    #codec;
    #protocols;
    #retry;
    #stableAfterMs;
    #connectTimeoutMs;
    #maxQueued;
    #abnormalClose;
    #makeWebSocket;
    #random;
    #messageHandlers = new Set();
    #stateHandlers = new Set();
    #errorHandlers = new Set();
    #state = { state: "closed", attempt: 0 };
    #ws = null;
    #queue = [];
    #discarded = 0;
    /** Failed attempts in a row (0 after a stable connection). */
    #attempt = 0;
    #openedAt = 0;
    #timer;
    /** Bumped on every connect and close, so that a stale callback knows it is stale. */
    #generation = 0;
    constructor(options) {
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
    get state() {
        return this.#state.state;
    }
    /** Messages waiting for a connection. */
    get queued() {
        return this.#queue.length;
    }
    /** Messages discarded so far because the socket closed before they could be sent. */
    get discarded() {
        return this.#discarded;
    }
    /** The subprotocol the server chose ("" for none, or while not connected). */
    get protocol() {
        return this.#state.state === "connected" ? (this.#ws?.protocol ?? "") : "";
    }
    /** Calls `handler` with every message; returns a function that stops it. */
    onMessage(handler) {
        return subscribe(this.#messageHandlers, handler);
    }
    /** Calls `handler` on every change of state; returns a function that stops it. */
    onState(handler) {
        return subscribe(this.#stateHandlers, handler);
    }
    /**
     * Calls `handler` with what goes wrong without a caller to throw to: a frame that does not
     * decode ({@link DecodeError}), queued messages discarded ({@link DiscardedError}), the
     * retry policy giving up ({@link RetriesExhaustedError}), an endpoint that fails. Without a
     * handler, they go to `console.error`. Returns a function that stops it.
     */
    onError(handler) {
        return subscribe(this.#errorHandlers, handler);
    }
    /** Starts connecting (from `closed`; otherwise it does nothing). */
    connect() {
        if (this.#state.state !== "closed")
            return;
        this.#attempt = 0;
        void this.#open();
    }
    /**
     * Sends `message` now if connected, else queues it for the next connection. Throws, and
     * neither sends nor queues, when the socket is closed ({@link SocketClosedError}), the queue
     * is full ({@link QueueFullError}), or the codec cannot encode the message.
     */
    send(message) {
        if (this.#state.state === "closed")
            throw new SocketClosedError();
        // Encoded now, so that a message that cannot be encoded fails here, at its sender.
        const frame = this.#codec.encode(message);
        const ws = this.#ws;
        if (this.#state.state === "connected" && ws && ws.readyState === OPEN) {
            ws.send(frame); // frames out
            return;
        }
        if (this.#queue.length >= this.#maxQueued)
            throw new QueueFullError(this.#maxQueued);
        this.#queue.push(frame);
    }
    /**
     * Closes the connection with `code` and `reason` (1000 by default) and stops reconnecting.
     * Queued messages are discarded and reported in one {@link DiscardedError}; returns how many.
     */
    close(code = 1000, reason = "") {
        const ws = this.#detach();
        if (ws && ws.readyState <= OPEN)
            ws.close(code, reason);
        return this.#finish(code, reason, "the socket was closed");
    }
    async #open() {
        const generation = ++this.#generation;
        this.#setState({ state: "connecting", attempt: this.#attempt });
        let url;
        try {
            const endpoint = typeof this.#url === "function" ? await this.#url() : this.#url;
            url = String(endpoint);
        }
        catch (cause) {
            if (generation !== this.#generation)
                return;
            this.#report(new Error(`the endpoint failed: ${cause?.message ?? cause}`, { cause }));
            this.#closed(ABNORMAL, "the endpoint failed", false);
            return;
        }
        if (generation !== this.#generation)
            return; // closed while the endpoint was asked
        let ws;
        try {
            ws = this.#makeWebSocket(url, this.#protocols);
        }
        catch (cause) {
            // An invalid URL: trying again would fail the same way.
            this.#report(new Error(`cannot open a WebSocket to ${url}: ${cause?.message ?? cause}`, { cause }));
            this.#finish(ABNORMAL, "invalid endpoint", "the endpoint is invalid");
            return;
        }
        this.#ws = ws;
        ws.binaryType = "arraybuffer";
        this.#timer = setTimeout(() => {
            // Closing a WebSocket that is still connecting fails it; onclose then reports 1006.
            if (generation === this.#generation && ws.readyState !== OPEN)
                ws.close();
        }, this.#connectTimeoutMs);
        ws.onopen = () => {
            if (generation !== this.#generation)
                return;
            clearTimeout(this.#timer);
            this.#openedAt = Date.now();
            this.#setState({ state: "connected", attempt: this.#attempt });
            const queued = this.#queue;
            this.#queue = [];
            for (const frame of queued)
                ws.send(frame); // frames out
        };
        ws.onmessage = (event) => {
            if (generation !== this.#generation)
                return;
            this.#receive(event.data); // frames in
        };
        ws.onclose = (event) => {
            if (generation !== this.#generation)
                return;
            this.#detach();
            this.#closed(event.code, event.reason, this.#openedAt > 0);
        };
        // Every error is followed by a close event, which is where it is handled.
        ws.onerror = null;
    }
    #receive(frame) {
        let message;
        try {
            message = this.#codec.decode(frame);
        }
        catch (cause) {
            this.#report(cause instanceof DecodeError ? cause : new DecodeError(String(cause), frame, { cause }));
            return;
        }
        emit(this.#messageHandlers, message);
    }
    /** The connection ended (or an attempt failed): reconnect, or close for good. */
    #closed(code, reason, wasOpen) {
        if (wasOpen && Date.now() - this.#openedAt >= this.#stableAfterMs)
            this.#attempt = 0;
        this.#openedAt = 0;
        if (!this.#abnormalClose(code, reason)) {
            this.#finish(code, reason, `the server closed the connection (${code})`);
            return;
        }
        const delay = this.#retry === null ? null : retryDelay(this.#retry, this.#attempt + 1, this.#random);
        if (delay === null) {
            if (this.#retry !== null)
                this.#report(new RetriesExhaustedError(this.#attempt, code, reason));
            this.#finish(code, reason, "the socket stopped reconnecting");
            return;
        }
        this.#attempt += 1;
        const generation = ++this.#generation;
        this.#setState({ state: "retrying", attempt: this.#attempt, delayMs: delay, code, reason });
        this.#timer = setTimeout(() => {
            if (generation === this.#generation)
                void this.#open();
        }, delay);
    }
    /** Unhooks the current WebSocket (if any) so that nothing it does reaches this socket again. */
    #detach() {
        this.#generation += 1;
        clearTimeout(this.#timer);
        const ws = this.#ws;
        this.#ws = null;
        if (ws)
            ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        return ws;
    }
    /** Closed for good: discards (and reports) the queue. Returns how many were discarded. */
    #finish(code, reason, why) {
        this.#detach();
        const count = this.#queue.length;
        this.#queue = [];
        if (this.#state.state !== "closed")
            this.#setState({ state: "closed", attempt: this.#attempt, code, reason });
        if (count > 0) {
            this.#discarded += count;
            this.#report(new DiscardedError(count, why));
        }
        return count;
    }
    #setState(change) {
        this.#state = change;
        emit(this.#stateHandlers, change);
    }
    #report(error) {
        if (this.#errorHandlers.size === 0) {
            console.error("CrimsonSocket:", error);
            return;
        }
        emit(this.#errorHandlers, error);
    }
}
function subscribe(handlers, handler) {
    // A wrapper, so that the same function subscribed twice is called twice and stopped once.
    const entry = (value) => handler(value);
    handlers.add(entry);
    return () => void handlers.delete(entry);
}
/** Calls every handler; one that throws is reported as uncaught and does not stop the others. */
function emit(handlers, value) {
    for (const handler of [...handlers]) {
        try {
            handler(value);
        }
        catch (error) {
            queueMicrotask(() => {
                throw error;
            });
        }
    }
}
function positive(name, value) {
    if (!(value > 0) || !Number.isFinite(value)) {
        throw new RangeError(`${name} must be a finite number above 0, not ${value}`);
    }
    return value;
}
