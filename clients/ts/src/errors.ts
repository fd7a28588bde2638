// Every way a CrimsonSocket refuses a message or loses one is an error value: nothing is
// dropped in silence.

/** `send` was called while the socket is closed (before `connect`, after `close`, or after it gave up). */
export class SocketClosedError extends Error {
  override readonly name = "SocketClosedError";
  constructor() {
    super("the socket is closed: call connect() first (nothing was queued)");
  }
}

/**
 * `send` was called while disconnected and `maxQueued` messages already wait: the message was
 * not queued. Wait for the `connected` state, or show the user that it was not sent.
 */
export class QueueFullError extends Error {
  override readonly name = "QueueFullError";
  constructor(readonly limit: number) {
    super(`${limit} messages already wait for a connection: this one was not queued`);
  }
}

/** A frame from the server did not decode into a `Down` (it is not delivered to message handlers). */
export class DecodeError extends Error {
  override readonly name = "DecodeError";
  /** The frame as received. */
  readonly frame: string | ArrayBuffer;
  constructor(message: string, frame: string | ArrayBuffer, options?: { cause?: unknown }) {
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
  override readonly name = "DiscardedError";
  constructor(readonly count: number, why: string) {
    super(`${count} queued message${count === 1 ? " was" : "s were"} never sent: ${why}`);
  }
}

/** The retry policy gave up: `attempts` reconnect attempts in a row failed. */
export class RetriesExhaustedError extends Error {
  override readonly name = "RetriesExhaustedError";
  constructor(readonly attempts: number, readonly code: number, readonly reason: string) {
    super(`gave up after ${attempts} failed reconnect attempt${attempts === 1 ? "" : "s"} (last close ${code}${reason ? ` ${reason}` : ""})`);
  }
}

/**
 * A frame from the server that breaks the Crimson protocol (`crimson.v1`): no header line, a
 * header that does not parse, a kind this client does not know, an answer without its `id`.
 * It is skipped (nothing is delivered) and reported; the socket stays open.
 */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
  /** The frame as received. */
  readonly frame: string | ArrayBuffer;
  constructor(message: string, frame: string | ArrayBuffer) {
    super(message);
    this.frame = frame;
  }
}

/**
 * A request was answered with an error (`err id=… code=…`): `code` says why (`400` the
 * request did not decode, `500` not answered or the handler failed, `503` the server is
 * shutting down, `4000`–`4999` the application's own) and `reason` is the peer's text.
 *
 * An `onRequest` handler throws one to refuse the server's request with that code and text.
 */
export class RequestRejectedError extends Error {
  override readonly name = "RequestRejectedError";
  constructor(
    readonly code: number,
    readonly reason: string,
    /** The `retry` field of the `err` frame, as sent (percent-decoded), if any. */
    readonly retry?: string,
  ) {
    super(`the request was refused (${code})${reason ? `: ${reason}` : ""}`);
  }
}

/** No answer came within the request's `timeoutMs`. Code `408`: a timeout is local, never sent. */
export class RequestTimeoutError extends Error {
  override readonly name = "RequestTimeoutError";
  readonly code = 408;
  constructor(readonly timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms`);
  }
}

/**
 * A request failed because there was no connection for it: asked while not connected, cut off
 * by a lost connection before its answer (the server may or may not have had it), or still
 * open when the socket closed. It was not sent again: only a request marked `idempotent` is.
 */
export class DisconnectedError extends Error {
  override readonly name = "DisconnectedError";
  constructor(why: string) {
    super(`disconnected: ${why}`);
  }
}

/** `maxOpenRequests` requests already wait for answers: this one was not sent. */
export class TooManyRequestsError extends Error {
  override readonly name = "TooManyRequestsError";
  constructor(readonly limit: number) {
    super(`${limit} requests already wait for answers: this one was not sent`);
  }
}

/**
 * The server did not answer with the Crimson protocol (`crimson.v1.*`: the socket did not ask
 * for it with `protocol: true`, or the route does not speak it), so requests cannot travel.
 */
export class NoProtocolError extends Error {
  override readonly name = "NoProtocolError";
  constructor(readonly subprotocol: string) {
    super(
      `the connection does not speak the Crimson protocol (the server answered ${subprotocol ? `"${subprotocol}"` : "no subprotocol"}): requests cannot be sent`,
    );
  }
}

/**
 * What a stream published while the socket was away cannot be recovered (crimson.v1, a route
 * with history): the application missed messages. Reported on `onError` only when no
 * `onNotRecovered` handler listens, so that a gap is never silent.
 */
export class NotRecoveredError extends Error {
  override readonly name = "NotRecoveredError";
  constructor(
    /** `all`, or `room:<name>`. */
    readonly stream: string,
    /** Why: the server's `lost` reason, or the socket's own. */
    readonly reason: string,
  ) {
    super(`messages of \`${stream}\` were missed and cannot be recovered: ${reason}`);
  }
}
