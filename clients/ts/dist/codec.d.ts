import type { Check, ObjectCheck } from "./check.js";
/** A frame as the browser hands it over (`binaryType` is set to `"arraybuffer"`). */
export type Frame = string | ArrayBuffer;
/** A frame to send: what the browser's `WebSocket.send` takes, less `Blob`. */
export type OutFrame = string | ArrayBuffer | ArrayBufferView<ArrayBuffer>;
/** Encodes `Up` messages into frames and decodes frames into `Down` messages. */
export interface Codec<Up, Down> {
    /**
     * The codec's name in subprotocol tokens (`"json"` for `crimson.json` and
     * `crimson.v1.json`). Needed to ask for the Crimson protocol (`protocol: true`).
     */
    readonly token?: string;
    /**
     * The kind of frame this codec writes and reads: `"text"` for text encodings (JSON),
     * `"binary"` for the others. A frame of the other kind fails to decode.
     */
    readonly frames: "text" | "binary";
    /** The frame for `message`. Throws when it cannot be encoded; `send` then throws it. */
    encode(message: Up): OutFrame;
    /** The message in `frame`. Throws a {@link DecodeError} when it is not a `Down`. */
    decode(frame: Frame): Down;
}
/** Options of {@link jsonCodec}. */
export interface JsonCodecOptions<Down> {
    /**
     * Checks every decoded value before it is handed over as a `Down` (see `object()`): a value
     * it refuses is a {@link DecodeError}, not a message. Without it, whatever JSON arrives is
     * taken to be a `Down` on trust.
     */
    readonly validate?: Check<Down> | ObjectCheck<Down>;
}
/** JSON in Text frames: Crimson's `json` codec. */
export declare function jsonCodec<Up, Down>(options?: JsonCodecOptions<Down>): Codec<Up, Down>;
/**
 * The longest header line read, as crimson-core reads it (a room's name is up to 1024 bytes,
 * three times that percent-encoded): past it, a frame is a protocol error.
 */
export declare const MAX_HEADER = 4096;
/**
 * Where a publication stands in its stream: the stream (`all`, `room:<name>`), its epoch (a
 * short string that changes when the server lost the stream's history) and its offset (1, 2,
 * 3… within the epoch). The offset is an unsigned 64-bit number on the wire, so a `bigint`
 * here: compare offsets as bigints, never as JavaScript numbers or as strings.
 */
export interface Position {
    readonly stream: string;
    readonly epoch: string;
    readonly offset: bigint;
}
/** A crimson.v1 frame, split: what its header says, and its body (of the frame's kind). */
export type ProtocolFrame = {
    readonly kind: "message";
    readonly body: Frame;
}
/** A request; `id` is kept as sent (decimal digits), to be echoed exactly in the answer. */
 | {
    readonly kind: "req";
    readonly id: string;
    readonly body: Frame;
} | {
    readonly kind: "res";
    readonly id: number;
    readonly body: Frame;
} | {
    readonly kind: "err";
    readonly id: number;
    readonly code: number;
    readonly retry?: string;
    readonly body: Frame;
}
/** A message published in `stream` at `offset` (epoch `epoch`): the body is the message. */
 | ({
    readonly kind: "pub";
    readonly body: Frame;
} & Position)
/**
 * The session follows `stream` from `offset` on (sent when it connects, for `all`, and when
 * it joins a room): where to resume from even if nothing comes. The body is empty.
 */
 | ({
    readonly kind: "sub";
    readonly body: Frame;
} & Position)
/**
 * The session no longer follows `stream` (it left the room): forget it, do not resume it.
 * The body is empty.
 */
 | {
    readonly kind: "unsub";
    readonly stream: string;
    readonly body: Frame;
}
/** Client → server: the last position the client delivered in `stream`; the body is empty. */
 | ({
    readonly kind: "resume";
    readonly body: Frame;
} & Position)
/**
 * The answer to a `resume`: `count` missed publications of `stream` follow as `pub` frames;
 * `offset` is the last of them (the stream's last).
 */
 | ({
    readonly kind: "recovered";
    readonly count: bigint;
    readonly body: Frame;
} & Position)
/** The answer to a `resume`: what was missed cannot be sent (`reason`); the stream goes on after `offset`. */
 | ({
    readonly kind: "lost";
    readonly reason: string;
    readonly body: Frame;
} & Position);
/**
 * `body` behind `header` (`""` for a plain message, `req id=3`, …), in a frame of the body's
 * kind: a string for a Text frame, bytes for a Binary one.
 */
export declare function writeFrame(header: string, body: OutFrame): OutFrame;
/**
 * Splits a crimson.v1 frame into what its header says and its body. Throws a
 * {@link ProtocolError} for a frame that breaks the protocol: no header line within
 * {@link MAX_HEADER} bytes, a header that is not ASCII, a field that is not `key=value`, a
 * value that is not percent-encoded UTF-8, a kind this client does not know, a `req`, `res`
 * or `err` without a decimal `id`, an `err` without a numeric `code`, a `sub`, `pub`, `resume`,
 * `recovered` or `lost` without `s`, `e` and a decimal `o` (0 to 2⁶⁴−1), a `recovered`
 * without `n`, a `lost` without `reason`. Unknown keys are ignored; values are
 * percent-decoded.
 */
export declare function readFrame(frame: Frame): ProtocolFrame;
/**
 * The header of a frame about a position: `resume s=… e=… o=…` (also `pub`, `recovered`,
 * `lost`, less their other fields), `s` and `e` percent-encoded.
 */
export declare function positionHeader(kind: "sub" | "pub" | "resume" | "recovered" | "lost", at: Position): string;
/**
 * `value` percent-encoded as crimson.v1 writes a value (RFC 3986): every UTF-8 byte but
 * `A–Z a–z 0–9 - . _ ~` as `%XX`.
 */
export declare function percentEncode(value: string): string;
/** The text of an `err` frame's body (UTF-8 in either frame kind). */
export declare function frameText(body: Frame): string;
/** `text` as the body of a frame of `kind` (an `err`'s message travels in the codec's frame kind). */
export declare function textBody(text: string, kind: "text" | "binary"): OutFrame;
