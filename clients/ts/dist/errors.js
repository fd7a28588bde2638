// Every way a CrimsonSocket refuses a message or loses one is an error value: nothing is
// dropped in silence.
/** `send` was called while the socket is closed (before `connect`, after `close`, or after it gave up). */
export class SocketClosedError extends Error {
    name = "SocketClosedError";
    constructor() {
        super("the socket is closed: call connect() first (nothing was queued)");
    }
}
/**
 * `send` was called while disconnected and `maxQueued` messages already wait: the message was
 * not queued. Wait for the `connected` state, or show the user that it was not sent.
 */
export class QueueFullError extends Error {
    limit;
    name = "QueueFullError";
    constructor(limit) {
        super(`${limit} messages already wait for a connection: this one was not queued`);
        this.limit = limit;
    }
}
/** A frame from the server did not decode into a `Down` (it is not delivered to message handlers). */
export class DecodeError extends Error {
    name = "DecodeError";
    /** The frame as received. */
    frame;
    constructor(message, frame, options) {
        super(message, options);
        this.frame = frame;
    }
}
/**
 * Messages that waited for a connection were never sent, because the socket closed first
 * (`close()`, a close that does not reconnect, or the retry policy giving up). Reported once
 * per close, with how many.
 */
export class DiscardedError extends Error {
    count;
    name = "DiscardedError";
    constructor(count, why) {
        super(`${count} queued message${count === 1 ? " was" : "s were"} never sent: ${why}`);
        this.count = count;
    }
}
/** The retry policy gave up: `attempts` reconnect attempts in a row failed. */
export class RetriesExhaustedError extends Error {
    attempts;
    code;
    reason;
    name = "RetriesExhaustedError";
    constructor(attempts, code, reason) {
        super(`gave up after ${attempts} failed reconnect attempt${attempts === 1 ? "" : "s"} (last close ${code}${reason ? ` ${reason}` : ""})`);
        this.attempts = attempts;
        this.code = code;
        this.reason = reason;
    }
}
