// How messages become frames and frames messages: the one part of a CrimsonSocket that knows
// the encoding. JSON now; a binary codec (CBOR, MessagePack, Protobuf) is another `Codec`.

import type { Check, ObjectCheck } from "./check.js";
import { DecodeError } from "./errors.js";

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
export function jsonCodec<Up, Down>(options: JsonCodecOptions<Down> = {}): Codec<Up, Down> {
  const { validate } = options;
  return {
    frames: "text",
    encode(message: Up): string {
      const text = JSON.stringify(message);
      if (text === undefined) throw new TypeError("this message has no JSON form");
      return text;
    },
    decode(frame: Frame): Down {
      if (typeof frame !== "string") {
        throw new DecodeError("a Binary frame on a JSON (Text) route", frame);
      }
      let value: unknown;
      try {
        value = JSON.parse(frame);
      } catch (cause) {
        throw new DecodeError(`not JSON: ${(cause as Error).message}`, frame, { cause });
      }
      if (validate && !validate(value)) {
        const problems = "problems" in validate ? validate.problems(value) : [];
        throw new DecodeError(`not the expected message${problems.length ? `: ${problems.join("; ")}` : ""}`, frame);
      }
      return value as Down;
    },
  };
}
