// crimson-socket: a small typed WebSocket client for Crimson routes, for browsers. No
// framework, no bundler: ES modules, loaded by an import map or imported by path.
export { CrimsonSocket } from "./socket.js";
export { jsonCodec, MAX_HEADER, readFrame, writeFrame } from "./codec.js";
export { MAX_STREAMS } from "./recovery.js";
export { arrayOf, isBoolean, isNumber, isString, nullable, object, oneOf, optional } from "./check.js";
export { DEFAULT_RETRY, resolveRetry, retryDelay } from "./retry.js";
export { DecodeError, DisconnectedError, DiscardedError, NoProtocolError, NotRecoveredError, ProtocolError, QueueFullError, RequestRejectedError, RequestTimeoutError, RetriesExhaustedError, SocketClosedError, TooManyRequestsError, } from "./errors.js";
