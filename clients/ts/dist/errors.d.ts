/** `send` was called while the socket is closed (before `connect`, after `close`, or after it gave up). */
export declare class SocketClosedError extends Error {
    readonly name = "SocketClosedError";
    constructor();
}
/**
 * `send` was called while disconnected and `maxQueued` messages already wait: the message was
 * not queued. Wait for the `connected` state, or show the user that it was not sent.
 */
export declare class QueueFullError extends Error {
    readonly limit: number;
    readonly name = "QueueFullError";
    constructor(limit: number);
}
/** A frame from the server did not decode into a `Down` (it is not delivered to message handlers). */
export declare class DecodeError extends Error {
    readonly name = "DecodeError";
    /** The frame as received. */
    readonly frame: string | ArrayBuffer;
    constructor(message: string, frame: string | ArrayBuffer, options?: {
        cause?: unknown;
    });
}
/**
 * Messages that waited for a connection were never sent, because the socket closed first
 * (`close()`, a close that does not reconnect, or the retry policy giving up). Reported once
 * per close, with how many.
 */
export declare class DiscardedError extends Error {
    readonly count: number;
    readonly name = "DiscardedError";
    constructor(count: number, why: string);
}
/** The retry policy gave up: `attempts` reconnect attempts in a row failed. */
export declare class RetriesExhaustedError extends Error {
    readonly attempts: number;
    readonly code: number;
    readonly reason: string;
    readonly name = "RetriesExhaustedError";
    constructor(attempts: number, code: number, reason: string);
}
/**
 * A frame from the server that breaks the Crimson protocol (`crimson.v1`): no header line, a
 * header that does not parse, a kind this client does not know, an answer without its `id`.
 * It is skipped (nothing is delivered) and reported; the socket stays open.
 */
export declare class ProtocolError extends Error {
    readonly name = "ProtocolError";
    /** The frame as received. */
    readonly frame: string | ArrayBuffer;
    constructor(message: string, frame: string | ArrayBuffer);
}
/**
 * A request was answered with an error (`err id=… code=…`): `code` says why (`400` the
 * request did not decode, `500` not answered or the handler failed, `503` the server is
 * shutting down, `4000`–`4999` the application's own) and `reason` is the peer's text.
 *
 * An `onRequest` handler throws one to refuse the server's request with that code and text.
 */
export declare class RequestRejectedError extends Error {
    readonly code: number;
    readonly reason: string;
    /** The `retry` field of the `err` frame, as sent (percent-decoded), if any. */
    readonly retry?: string | undefined;
    readonly name = "RequestRejectedError";
    constructor(code: number, reason: string, 
    /** The `retry` field of the `err` frame, as sent (percent-decoded), if any. */
    retry?: string | undefined);
}
/** No answer came within the request's `timeoutMs`. Code `408`: a timeout is local, never sent. */
export declare class RequestTimeoutError extends Error {
    readonly timeoutMs: number;
    readonly name = "RequestTimeoutError";
    readonly code = 408;
    constructor(timeoutMs: number);
}
/**
 * A request failed because there was no connection for it: asked while not connected, cut off
 * by a lost connection before its answer (the server may or may not have had it), or still
 * open when the socket closed. It was not sent again: only a request marked `idempotent` is.
 */
export declare class DisconnectedError extends Error {
    readonly name = "DisconnectedError";
    constructor(why: string);
}
/** `maxOpenRequests` requests already wait for answers: this one was not sent. */
export declare class TooManyRequestsError extends Error {
    readonly limit: number;
    readonly name = "TooManyRequestsError";
    constructor(limit: number);
}
/**
 * The server did not answer with the Crimson protocol (`crimson.v1.*`: the socket did not ask
 * for it with `protocol: true`, or the route does not speak it), so requests cannot travel.
 */
export declare class NoProtocolError extends Error {
    readonly subprotocol: string;
    readonly name = "NoProtocolError";
    constructor(subprotocol: string);
}
/**
 * What a stream published while the socket was away cannot be recovered (crimson.v1, a route
 * with history): the application missed messages. Reported on `onError` only when no
 * `onNotRecovered` handler listens, so that a gap is never silent.
 */
export declare class NotRecoveredError extends Error {
    /** `all`, or `room:<name>`. */
    readonly stream: string;
    /** Why: the server's `lost` reason, or the socket's own. */
    readonly reason: string;
    readonly name = "NotRecoveredError";
    constructor(
    /** `all`, or `room:<name>`. */
    stream: string, 
    /** Why: the server's `lost` reason, or the socket's own. */
    reason: string);
}
