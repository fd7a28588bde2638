// How messages become frames and frames messages: the one part of a CrimsonSocket that knows
// the encoding. JSON now; a binary codec (CBOR, MessagePack, Protobuf) is another `Codec`.
import { DecodeError, ProtocolError } from "./errors.js";
/** JSON in Text frames: Crimson's `json` codec. */
export function jsonCodec(options = {}) {
    const { validate } = options;
    return {
        token: "json",
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
// ---------------------------------------------------------------------------------------
// crimson.v1 frames (docs/protocol.md, section 3): `HEADER \n BODY`, both ways, in the codec's
// frame kind. HEADER is empty for a plain message, else a kind word and ` key=value` fields.
/**
 * The longest header line read, as crimson-core reads it (a room's name is up to 1024 bytes,
 * three times that percent-encoded): past it, a frame is a protocol error.
 */
export const MAX_HEADER = 4096;
/** The largest value of an unsigned 64-bit number: the range of `id`, `o` and `n`. */
const U64_MAX = (1n << 64n) - 1n;
const LF = 0x0a;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/**
 * `body` behind `header` (`""` for a plain message, `req id=3`, …), in a frame of the body's
 * kind: a string for a Text frame, bytes for a Binary one.
 */
export function writeFrame(header, body) {
    if (typeof body === "string")
        return `${header}\n${body}`;
    const bytes = ArrayBuffer.isView(body)
        ? new Uint8Array(body.buffer, body.byteOffset, body.byteLength)
        : new Uint8Array(body);
    const head = encoder.encode(`${header}\n`);
    const out = new Uint8Array(head.length + bytes.length);
    out.set(head);
    out.set(bytes, head.length);
    return out.buffer;
}
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
export function readFrame(frame) {
    let header;
    let body;
    if (typeof frame === "string") {
        const end = frame.slice(0, MAX_HEADER + 1).indexOf("\n");
        if (end < 0)
            throw missingHeader(frame, frame.length);
        header = frame.slice(0, end);
        body = frame.slice(end + 1);
    }
    else {
        const bytes = new Uint8Array(frame);
        const end = bytes.subarray(0, MAX_HEADER + 1).indexOf(LF);
        if (end < 0)
            throw missingHeader(frame, bytes.length);
        header = decoder.decode(bytes.subarray(0, end));
        body = frame.slice(end + 1);
    }
    if (!/^[\x20-\x7e]*$/.test(header))
        throw new ProtocolError("crimson.v1: the header line is not ASCII", frame);
    if (header === "")
        return { kind: "message", body };
    const [kind = "", ...words] = header.split(" ");
    const fields = new Map();
    for (const word of words) {
        const eq = word.indexOf("=");
        if (eq < 0)
            throw new ProtocolError(`crimson.v1: \`${shown(word)}\` is not a key=value field`, frame);
        let value;
        try {
            value = decodeURIComponent(word.slice(eq + 1));
        }
        catch {
            throw new ProtocolError(`crimson.v1: \`${shown(word)}\` is not percent-encoded UTF-8`, frame);
        }
        fields.set(word.slice(0, eq), value);
    }
    const id = () => {
        const value = fields.get("id");
        if (value === undefined)
            throw new ProtocolError(`crimson.v1: a \`${kind}\` needs an id`, frame);
        if (!/^[0-9]{1,20}$/.test(value)) {
            throw new ProtocolError(`crimson.v1: \`id=${shown(value)}\` is not a decimal number`, frame);
        }
        return value;
    };
    /** A u64 field (`o`, `n`), as a bigint. */
    const u64 = (key, what) => {
        const value = fields.get(key);
        if (value === undefined)
            throw new ProtocolError(`crimson.v1: a \`${what}\` needs \`${key}\``, frame);
        if (!/^[0-9]{1,20}$/.test(value) || BigInt(value) > U64_MAX) {
            throw new ProtocolError(`crimson.v1: \`${key}=${shown(value)}\` is not a number in range`, frame);
        }
        return BigInt(value);
    };
    const position = (what) => {
        const text = (key) => {
            const value = fields.get(key);
            if (value === undefined)
                throw new ProtocolError(`crimson.v1: a \`${what}\` needs \`${key}\``, frame);
            return value;
        };
        return { stream: text("s"), epoch: text("e"), offset: u64("o", what) };
    };
    switch (kind) {
        case "pub":
        case "sub":
        case "resume":
            return { kind, ...position(kind), body };
        case "unsub": {
            const stream = fields.get("s");
            if (stream === undefined)
                throw new ProtocolError("crimson.v1: an `unsub` needs `s`", frame);
            return { kind, stream, body };
        }
        case "recovered":
            return { kind, ...position(kind), count: u64("n", kind), body };
        case "lost": {
            const at = position(kind);
            const reason = fields.get("reason");
            if (reason === undefined)
                throw new ProtocolError("crimson.v1: a `lost` needs a `reason`", frame);
            return { kind, ...at, reason, body };
        }
        case "req":
            return { kind, id: id(), body };
        case "res":
            return { kind, id: Number(id()), body };
        case "err": {
            const errId = Number(id());
            const code = fields.get("code");
            if (code === undefined)
                throw new ProtocolError("crimson.v1: an `err` needs a code", frame);
            if (!/^[0-9]{1,5}$/.test(code)) {
                throw new ProtocolError(`crimson.v1: \`code=${shown(code)}\` is not a number in range`, frame);
            }
            const retry = fields.get("retry");
            return { kind, id: errId, code: Number(code), ...(retry === undefined ? {} : { retry }), body };
        }
        default:
            throw new ProtocolError(`crimson.v1: unknown frame kind \`${shown(kind)}\``, frame);
    }
}
/**
 * The header of a frame about a position: `resume s=… e=… o=…` (also `pub`, `recovered`,
 * `lost`, less their other fields), `s` and `e` percent-encoded.
 */
export function positionHeader(kind, at) {
    return `${kind} s=${percentEncode(at.stream)} e=${percentEncode(at.epoch)} o=${at.offset}`;
}
/**
 * `value` percent-encoded as crimson.v1 writes a value (RFC 3986): every UTF-8 byte but
 * `A–Z a–z 0–9 - . _ ~` as `%XX`.
 */
export function percentEncode(value) {
    // encodeURIComponent leaves ! ' ( ) * as they are; the protocol encodes them too.
    return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
/** The text of an `err` frame's body (UTF-8 in either frame kind). */
export function frameText(body) {
    return typeof body === "string" ? body : decoder.decode(body);
}
/** `text` as the body of a frame of `kind` (an `err`'s message travels in the codec's frame kind). */
export function textBody(text, kind) {
    return kind === "text" ? text : encoder.encode(text).buffer;
}
function missingHeader(frame, length) {
    return new ProtocolError(length > MAX_HEADER
        ? `crimson.v1: no end of header line within ${MAX_HEADER} bytes`
        : "crimson.v1: a frame needs a header line ending in \\n (empty for a message)", frame);
}
/** At most 32 characters of what the peer sent, for an error message. */
function shown(text) {
    return text.slice(0, 32);
}
