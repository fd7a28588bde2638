// How messages become frames and frames messages: the one part of a CrimsonSocket that knows
// the encoding. JSON now; a binary codec (CBOR, MessagePack, Protobuf) is another `Codec`.

import type { Check, ObjectCheck } from "./check.js";
import { DecodeError, ProtocolError } from "./errors.js";

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
export function jsonCodec<Up, Down>(options: JsonCodecOptions<Down> = {}): Codec<Up, Down> {
  const { validate } = options;
  return {
    token: "json",
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

// ---------------------------------------------------------------------------------------
// crimson.v1 frames (docs/protocol.md, section 3): `HEADER \n BODY`, both ways, in the codec's
// frame kind. HEADER is empty for a plain message, else a kind word and ` key=value` fields.

/**
 * The longest header line read, as crimson-core reads it (a room's name is up to 1024 bytes,
 * three times that percent-encoded): past it, a frame is a protocol error.
 */
export const MAX_HEADER = 4096;

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
export type ProtocolFrame =
  | { readonly kind: "message"; readonly body: Frame }
  /** A request; `id` is kept as sent (decimal digits), to be echoed exactly in the answer. */
  | { readonly kind: "req"; readonly id: string; readonly body: Frame }
  | { readonly kind: "res"; readonly id: number; readonly body: Frame }
  | { readonly kind: "err"; readonly id: number; readonly code: number; readonly retry?: string; readonly body: Frame }
  /** A message published in `stream` at `offset` (epoch `epoch`): the body is the message. */
  | ({ readonly kind: "pub"; readonly body: Frame } & Position)
  /**
   * The session follows `stream` from `offset` on (sent when it connects, for `all`, and when
   * it joins a room): where to resume from even if nothing comes. The body is empty.
   */
  | ({ readonly kind: "sub"; readonly body: Frame } & Position)
  /**
   * The session no longer follows `stream` (it left the room): forget it, do not resume it.
   * The body is empty.
   */
  | { readonly kind: "unsub"; readonly stream: string; readonly body: Frame }
  /** Client → server: the last position the client delivered in `stream`; the body is empty. */
  | ({ readonly kind: "resume"; readonly body: Frame } & Position)
  /**
   * The answer to a `resume`: `count` missed publications of `stream` follow as `pub` frames;
   * `offset` is the last of them (the stream's last).
   */
  | ({ readonly kind: "recovered"; readonly count: bigint; readonly body: Frame } & Position)
  /** The answer to a `resume`: what was missed cannot be sent (`reason`); the stream goes on after `offset`. */
  | ({ readonly kind: "lost"; readonly reason: string; readonly body: Frame } & Position);

/** The largest value of an unsigned 64-bit number: the range of `id`, `o` and `n`. */
const U64_MAX = (1n << 64n) - 1n;

const LF = 0x0a;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * `body` behind `header` (`""` for a plain message, `req id=3`, …), in a frame of the body's
 * kind: a string for a Text frame, bytes for a Binary one.
 */
export function writeFrame(header: string, body: OutFrame): OutFrame {
  if (typeof body === "string") return `${header}\n${body}`;
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
export function readFrame(frame: Frame): ProtocolFrame {
  let header: string;
  let body: Frame;
  if (typeof frame === "string") {
    const end = frame.slice(0, MAX_HEADER + 1).indexOf("\n");
    if (end < 0) throw missingHeader(frame, frame.length);
    header = frame.slice(0, end);
    body = frame.slice(end + 1);
  } else {
    const bytes = new Uint8Array(frame);
    const end = bytes.subarray(0, MAX_HEADER + 1).indexOf(LF);
    if (end < 0) throw missingHeader(frame, bytes.length);
    header = decoder.decode(bytes.subarray(0, end));
    body = frame.slice(end + 1);
  }
  if (!/^[\x20-\x7e]*$/.test(header)) throw new ProtocolError("crimson.v1: the header line is not ASCII", frame);
  if (header === "") return { kind: "message", body };
  const [kind = "", ...words] = header.split(" ");
  const fields = new Map<string, string>();
  for (const word of words) {
    const eq = word.indexOf("=");
    if (eq < 0) throw new ProtocolError(`crimson.v1: \`${shown(word)}\` is not a key=value field`, frame);
    let value: string;
    try {
      value = decodeURIComponent(word.slice(eq + 1));
    } catch {
      throw new ProtocolError(`crimson.v1: \`${shown(word)}\` is not percent-encoded UTF-8`, frame);
    }
    fields.set(word.slice(0, eq), value);
  }
  const id = (): string => {
    const value = fields.get("id");
    if (value === undefined) throw new ProtocolError(`crimson.v1: a \`${kind}\` needs an id`, frame);
    if (!/^[0-9]{1,20}$/.test(value)) {
      throw new ProtocolError(`crimson.v1: \`id=${shown(value)}\` is not a decimal number`, frame);
    }
    return value;
  };
  /** A u64 field (`o`, `n`), as a bigint. */
  const u64 = (key: string, what: string): bigint => {
    const value = fields.get(key);
    if (value === undefined) throw new ProtocolError(`crimson.v1: a \`${what}\` needs \`${key}\``, frame);
    if (!/^[0-9]{1,20}$/.test(value) || BigInt(value) > U64_MAX) {
      throw new ProtocolError(`crimson.v1: \`${key}=${shown(value)}\` is not a number in range`, frame);
    }
    return BigInt(value);
  };
  const position = (what: string): Position => {
    const text = (key: string): string => {
      const value = fields.get(key);
      if (value === undefined) throw new ProtocolError(`crimson.v1: a \`${what}\` needs \`${key}\``, frame);
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
      if (stream === undefined) throw new ProtocolError("crimson.v1: an `unsub` needs `s`", frame);
      return { kind, stream, body };
    }
    case "recovered":
      return { kind, ...position(kind), count: u64("n", kind), body };
    case "lost": {
      const at = position(kind);
      const reason = fields.get("reason");
      if (reason === undefined) throw new ProtocolError("crimson.v1: a `lost` needs a `reason`", frame);
      return { kind, ...at, reason, body };
    }
    case "req":
      return { kind, id: id(), body };
    case "res":
      return { kind, id: Number(id()), body };
    case "err": {
      const errId = Number(id());
      const code = fields.get("code");
      if (code === undefined) throw new ProtocolError("crimson.v1: an `err` needs a code", frame);
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
export function positionHeader(kind: "sub" | "pub" | "resume" | "recovered" | "lost", at: Position): string {
  return `${kind} s=${percentEncode(at.stream)} e=${percentEncode(at.epoch)} o=${at.offset}`;
}

/**
 * `value` percent-encoded as crimson.v1 writes a value (RFC 3986): every UTF-8 byte but
 * `A–Z a–z 0–9 - . _ ~` as `%XX`.
 */
export function percentEncode(value: string): string {
  // encodeURIComponent leaves ! ' ( ) * as they are; the protocol encodes them too.
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The text of an `err` frame's body (UTF-8 in either frame kind). */
export function frameText(body: Frame): string {
  return typeof body === "string" ? body : decoder.decode(body);
}

/** `text` as the body of a frame of `kind` (an `err`'s message travels in the codec's frame kind). */
export function textBody(text: string, kind: "text" | "binary"): OutFrame {
  return kind === "text" ? text : encoder.encode(text).buffer;
}

function missingHeader(frame: Frame, length: number): ProtocolError {
  return new ProtocolError(
    length > MAX_HEADER
      ? `crimson.v1: no end of header line within ${MAX_HEADER} bytes`
      : "crimson.v1: a frame needs a header line ending in \\n (empty for a message)",
    frame,
  );
}

/** At most 32 characters of what the peer sent, for an error message. */
function shown(text: string): string {
  return text.slice(0, 32);
}
