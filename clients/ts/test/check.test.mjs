import { test } from "node:test";
import assert from "node:assert/strict";
import {
  arrayOf, isBoolean, isNumber, isString, jsonCodec, nullable, object, oneOf, optional, DecodeError,
} from "../dist/index.js";

const isChatResponse = object({ text: isString, from: isString, at: isNumber });

test("object() accepts exactly the fields it names, each of its type", () => {
  assert.ok(isChatResponse({ text: "hi", from: "s1", at: 1700000000000 }));
  assert.deepEqual(isChatResponse.problems({ text: "hi", at: "noon", extra: 1 }), [
    'missing field "from"',
    'field "at": unexpected string "noon"',
    'unexpected field "extra"',
  ]);
  assert.deepEqual(isChatResponse.problems([1]), ["expected an object, got array"]);
  assert.deepEqual(isChatResponse.problems(null), ["expected an object, got null"]);
  const lenient = object({ text: isString }, { extraFields: "allow" });
  assert.ok(lenient({ text: "hi", newer: true }));
});

test("nullable, optional, arrayOf and oneOf", () => {
  const check = object({
    nick: nullable(isString),
    note: optional(isString),
    tags: arrayOf(isString),
    kind: oneOf("joined", "left"),
    ok: isBoolean,
  });
  assert.ok(check({ nick: null, tags: [], kind: "left", ok: true }));
  assert.ok(check({ nick: "a", note: "n", tags: ["x"], kind: "joined", ok: false }));
  assert.deepEqual(check.problems({ nick: undefined, note: 3, tags: [1], kind: "gone", ok: 1 }), [
    'field "nick": unexpected undefined',
    'field "note": unexpected number 3',
    'field "tags": unexpected array',
    'field "kind": unexpected string "gone"',
    'field "ok": unexpected number 1',
  ]);
  assert.equal(isNumber(Number.NaN), false);
});

test("jsonCodec writes JSON text and checks what it reads", () => {
  const codec = jsonCodec({ validate: isChatResponse });
  assert.equal(codec.frames, "text");
  assert.equal(codec.encode({ text: "hi" }), '{"text":"hi"}');
  assert.deepEqual(codec.decode('{"text":"hi","from":"s1","at":5}'), { text: "hi", from: "s1", at: 5 });
  assert.throws(() => codec.decode('{"text":"hi","sender":"s1","at":5}'), {
    name: "DecodeError",
    message: 'not the expected message: missing field "from"; unexpected field "sender"',
  });
  assert.throws(() => codec.decode("{not json"), (err) => err instanceof DecodeError && err.message.startsWith("not JSON"));
  assert.throws(() => codec.decode(new ArrayBuffer(2)), { message: "a Binary frame on a JSON (Text) route" });
  assert.throws(() => codec.encode(undefined), TypeError);
  assert.throws(() => codec.encode({ big: 1n }), TypeError); // JSON has no bigint
  // Without a check, whatever JSON arrives is taken on trust.
  assert.deepEqual(jsonCodec().decode("[1]"), [1]);
});
