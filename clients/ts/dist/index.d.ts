export { CrimsonSocket } from "./socket.js";
export type { Answer, BaseOptions, ConnectionState, CrimsonSocketOptions, Endpoint, RequestOf, RequestOptions, RequestType, ResponseOf, ResponseTo, StateChange, WebSocketLike, } from "./socket.js";
export { jsonCodec, MAX_HEADER, readFrame, writeFrame } from "./codec.js";
export type { Codec, Frame, JsonCodecOptions, OutFrame, ProtocolFrame } from "./codec.js";
export { arrayOf, isBoolean, isNumber, isString, nullable, object, oneOf, optional } from "./check.js";
export type { Check, Fields, ObjectCheck, ObjectOptions } from "./check.js";
export { DEFAULT_RETRY, resolveRetry, retryDelay } from "./retry.js";
export type { ResolvedRetryPolicy, RetryPolicy } from "./retry.js";
export { DecodeError, DisconnectedError, DiscardedError, NoProtocolError, ProtocolError, QueueFullError, RequestRejectedError, RequestTimeoutError, RetriesExhaustedError, SocketClosedError, TooManyRequestsError, } from "./errors.js";
