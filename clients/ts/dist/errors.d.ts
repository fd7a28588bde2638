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
