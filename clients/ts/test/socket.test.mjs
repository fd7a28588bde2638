import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CrimsonSocket, DiscardedError, isNumber, isString, jsonCodec, object, QueueFullError,
  RetriesExhaustedError, SocketClosedError,
} from "../dist/index.js";
import { fakes, tick, until } from "./fake-websocket.mjs";

const isChatResponse = object({ text: isString, from: isString, at: isNumber });

/**
 * A socket on fake WebSockets, recording every state change, message and error; closed when
 * the test ends, pass or fail, so that no retry timer outlives it.
 */
function harness(t, options = {}) {
  const ws = fakes();
  const socket = new CrimsonSocket({
    url: "ws://127.0.0.1:1/chat",
    codec: jsonCodec({ validate: isChatResponse }),
    webSocket: ws.factory,
    random: () => 0, // no jitter: delays are exact
    retry: { initialDelayMs: 5, maxDelayMs: 40 },
    ...options,
  });
  const states = [];
  const messages = [];
  const errors = [];
  socket.onState((change) => states.push(change));
  socket.onMessage((message) => messages.push(message));
  socket.onError((error) => errors.push(error));
  t.after(() => socket.close());
  return { socket, ws, states, messages, errors };
}

test("send before connect is refused: nothing is queued", (t) => {
  const { socket } = harness(t);
  assert.throws(() => socket.send({ text: "early" }), SocketClosedError);
  assert.equal(socket.queued, 0);
});

test("messages sent while connecting wait and go out in order once connected", async (t) => {
  const { socket, ws, states } = harness(t, { protocols: "crimson.test" });
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  assert.equal(socket.state, "connecting");
  assert.deepEqual(ws.last().protocols, ["crimson.test"]);
  assert.equal(ws.last().binaryType, "arraybuffer");
  socket.send({ text: "one" });
  socket.send({ text: "two" });
  assert.equal(socket.queued, 2);
  assert.deepEqual(ws.last().sent, []);
  ws.last().open("crimson.test");
  assert.equal(socket.state, "connected");
  assert.equal(socket.protocol, "crimson.test");
  assert.deepEqual(ws.last().sent, ['{"text":"one"}', '{"text":"two"}']);
  socket.send({ text: "three" });
  assert.deepEqual(ws.last().sent.at(-1), '{"text":"three"}');
  assert.equal(socket.queued, 0);
  assert.deepEqual(states.map((s) => s.state), ["connecting", "connected"]);
  socket.close();
});

test("past maxQueued, send throws QueueFullError and queues nothing; close reports what was discarded", async (t) => {
  const { socket, ws, errors, states } = harness(t, { maxQueued: 3 });
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  for (const text of ["a", "b", "c"]) socket.send({ text });
  assert.throws(() => socket.send({ text: "d" }), (err) => err instanceof QueueFullError && err.limit === 3);
  assert.equal(socket.queued, 3);
  assert.equal(socket.close(4000, "bye"), 3);
  assert.equal(socket.state, "closed");
  assert.equal(socket.discarded, 3);
  assert.deepEqual(ws.last().closedWith, { code: 4000, reason: "bye" });
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof DiscardedError);
  assert.equal(errors[0].count, 3);
  assert.deepEqual(states.at(-1), { state: "closed", attempt: 0, code: 4000, reason: "bye" });
  assert.throws(() => socket.send({ text: "after" }), SocketClosedError);
});

test("an abnormal close retries with backoff, asks the endpoint again and flushes the queue", async (t) => {
  let asked = 0;
  const { socket, ws, states } = harness(t, { url: () => `ws://127.0.0.1:1/chat?try=${++asked}` });
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  ws.last().open();
  ws.last().serverClose(1001, "server going away");
  assert.equal(socket.state, "retrying");
  assert.deepEqual(states.at(-1), { state: "retrying", attempt: 1, delayMs: 5, code: 1001, reason: "server going away" });
  socket.send({ text: "while away" });
  await until(() => ws.made.length === 2, "a second WebSocket");
  assert.equal(ws.last().url, "ws://127.0.0.1:1/chat?try=2");
  // The attempt fails (1006): the next delay doubles.
  ws.last().serverClose(1006);
  assert.deepEqual(states.at(-1), { state: "retrying", attempt: 2, delayMs: 10, code: 1006, reason: "" });
  await until(() => ws.made.length === 3, "a third WebSocket");
  assert.deepEqual(states.at(-1), { state: "connecting", attempt: 2 });
  ws.last().open();
  assert.deepEqual(ws.last().sent, ['{"text":"while away"}']);
  assert.deepEqual(states.at(-1), { state: "connected", attempt: 2 });
  socket.close();
});

test("the backoff starts over only after a connection that stayed up for stableAfterMs", async (t) => {
  const { socket, ws, states } = harness(t, { stableAfterMs: 30 });
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  ws.last().open();
  ws.last().serverClose(1011); // at once: not stable
  await until(() => ws.made.length === 2, "a second WebSocket");
  ws.last().open();
  ws.last().serverClose(1011); // at once again: attempt 2
  assert.equal(states.at(-1).attempt, 2);
  await until(() => ws.made.length === 3, "a third WebSocket");
  ws.last().open();
  await tick(40);
  ws.last().serverClose(1011); // after a stable connection: attempt 1 again
  assert.deepEqual(states.at(-1), { state: "retrying", attempt: 1, delayMs: 5, code: 1011, reason: "" });
  socket.close();
});

test("a normal close (1000) does not reconnect by default, and reports the queue it discards", async (t) => {
  const { socket, ws, errors, states } = harness(t);
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  ws.last().open();
  ws.last().serverClose(1000, "done");
  assert.equal(socket.state, "closed");
  assert.deepEqual(states.at(-1), { state: "closed", attempt: 0, code: 1000, reason: "done" });
  assert.deepEqual(errors, []);
  // abnormalClose decides: a page that must stay in its room reconnects after any close.
  const always = harness(t, { abnormalClose: () => true });
  always.socket.connect();
  await until(() => always.ws.made.length === 1, "a WebSocket");
  always.ws.last().open();
  always.ws.last().serverClose(1000);
  assert.equal(always.socket.state, "retrying");
  always.socket.close();
});

test("the retry policy gives up after maxAttempts: RetriesExhaustedError, then DiscardedError", async (t) => {
  const { socket, ws, errors } = harness(t, { retry: { initialDelayMs: 1, maxAttempts: 2 } });
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  socket.send({ text: "never sent" });
  ws.last().serverClose(1006);
  await until(() => ws.made.length === 2, "a second WebSocket");
  ws.last().serverClose(1006);
  await until(() => ws.made.length === 3, "a third WebSocket");
  ws.last().serverClose(1006);
  assert.equal(socket.state, "closed");
  assert.equal(ws.made.length, 3);
  assert.deepEqual(errors.map((e) => e.name), ["RetriesExhaustedError", "DiscardedError"]);
  assert.ok(errors[0] instanceof RetriesExhaustedError);
  assert.equal(errors[0].attempts, 2);
  assert.equal(errors[1].count, 1);
  assert.equal(socket.discarded, 1);
});

test("retry: false closes on the first abnormal close", async (t) => {
  const { socket, ws } = harness(t, { retry: false });
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  ws.last().serverClose(1006);
  assert.equal(socket.state, "closed");
});

test("an attempt that does not open within connectTimeoutMs is abandoned and retried", async (t) => {
  const { socket, ws, states } = harness(t, { connectTimeoutMs: 10 });
  socket.connect();
  await until(() => ws.made.length === 2, "a second WebSocket after the timeout");
  assert.equal(ws.made[0].closedWith.code, undefined); // closed by the socket, while connecting
  assert.ok(states.some((s) => s.state === "retrying" && s.code === 1006));
  socket.close();
});

test("a frame that does not decode is an error, not a message; the next one still arrives", async (t) => {
  const { socket, ws, messages, errors } = harness(t);
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  ws.last().open();
  ws.last().receive('{"text":"hi","sender":"s1","at":5}');
  ws.last().receive('{"text":"hi","from":"s1","at":5}');
  assert.deepEqual(messages, [{ text: "hi", from: "s1", at: 5 }]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].name, "DecodeError");
  assert.equal(errors[0].frame, '{"text":"hi","sender":"s1","at":5}');
  assert.equal(socket.state, "connected");
  socket.close();
});

test("close() while retrying stops reconnecting; a stale WebSocket's events are ignored", async (t) => {
  const { socket, ws, states, messages } = harness(t, { retry: { initialDelayMs: 20 } });
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  const first = ws.last();
  first.open();
  first.serverClose(1011);
  assert.equal(socket.state, "retrying");
  socket.close();
  await tick(40);
  assert.equal(ws.made.length, 1);
  first.receive('{"text":"late","from":"s1","at":5}');
  assert.deepEqual(messages, []);
  assert.equal(states.at(-1).state, "closed");
  // connect() again starts over.
  socket.connect();
  await until(() => ws.made.length === 2, "a new WebSocket");
  assert.deepEqual(states.at(-1), { state: "connecting", attempt: 0 });
  socket.close();
});

test("a message that cannot be encoded throws at send, and nothing is queued", async (t) => {
  const { socket, ws } = harness(t);
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  assert.throws(() => socket.send({ text: 1n }), TypeError);
  assert.equal(socket.queued, 0);
  socket.close();
});

test("options that cannot work are refused at construction", (t) => {
  const base = { url: "ws://x", codec: jsonCodec(), webSocket: fakes().factory };
  assert.throws(() => new CrimsonSocket({ ...base, maxQueued: -1 }), /maxQueued/);
  assert.throws(() => new CrimsonSocket({ ...base, connectTimeoutMs: 0 }), /connectTimeoutMs/);
  assert.throws(() => new CrimsonSocket({ ...base, retry: { jitter: 2 } }), /jitter/);
});
