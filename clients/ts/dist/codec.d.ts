import type { Check, ObjectCheck } from "./check.js";
/** A frame as the browser hands it over (`binaryType` is set to `"arraybuffer"`). */
export type Frame = string | ArrayBuffer;
/** A frame to send: what the browser's `WebSocket.send` takes, less `Blob`. */
export type OutFrame = string | ArrayBuffer | ArrayBufferView<ArrayBuffer>;
/** Encodes `Up` messages into frames and decodes frames into `Down` messages. */
export interface Codec<Up, Down> {
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
