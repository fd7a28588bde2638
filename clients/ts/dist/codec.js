// How messages become frames and frames messages: the one part of a CrimsonSocket that knows
// the encoding. JSON now; a binary codec (CBOR, MessagePack, Protobuf) is another `Codec`.
import { DecodeError } from "./errors.js";
/** JSON in Text frames: Crimson's `json` codec. */
export function jsonCodec(options = {}) {
    const { validate } = options;
    return {
        frames: "text",
        encode(message) {
            const text = JSON.stringify(message);
            if (text === undefined)
                throw new TypeError("this message has no JSON form");
            return text;
        },
        decode(frame) {
            if (typeof frame !== "string") {
                throw new DecodeError("a Binary frame on a JSON (Text) route", frame);
            }
            let value;
            try {
                value = JSON.parse(frame);
            }
            catch (cause) {
                throw new DecodeError(`not JSON: ${cause.message}`, frame, { cause });
            }
            if (validate && !validate(value)) {
                const problems = "problems" in validate ? validate.problems(value) : [];
                throw new DecodeError(`not the expected message${problems.length ? `: ${problems.join("; ")}` : ""}`, frame);
            }
            return value;
        },
    };
}
