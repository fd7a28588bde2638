// The Crimson protocol (crimson.v1, docs/protocol.md section 3) on fake WebSockets: framing,
// requests and their answers, timeouts, errors, disconnects, the server's requests.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CrimsonSocket, DisconnectedError, isNumber, isString, jsonCodec, NoProtocolError, object, ProtocolError,
  readFrame, RequestRejectedError, RequestTimeoutError, SocketClosedError, TooManyRequestsError, writeFrame,
} from "../dist/index.js";
import { fakes, tick, until } from "./fake-websocket.mjs";

const isChatResponse = object({ text: isString, from: isString, at: isNumber });
const reply = (text) => JSON.stringify({ text, from: "server", at: 5 });

/** A socket that asks for crimson.v1, on fake WebSockets; closed when the test ends. */
function harness(t, options = {}) {
  const ws = fakes();
  const socket = new CrimsonSocket({
    url: "ws://127.0.0.1:1/chat",
    codec: jsonCodec({ validate: isChatResponse }),
    protocol: true,
    webSocket: ws.factory,
    random: () => 0,
    retry: { initialDelayMs: 5, maxDelayMs: 40 },
    ...options,
  });
  const messages = [];
  const errors = [];
  socket.onMessage((message) => messages.push(message));
  socket.onError((error) => errors.push(error));
  t.after(() => socket.close());
  return { socket, ws, messages, errors };
}

/** A harness whose socket is connected, the server having answered `protocol`. */
async function connected(t, options = {}, protocol = "crimson.v1.json") {
  const h = harness(t, options);
  h.socket.connect();
  await until(() => h.ws.made.length === 1, "a WebSocket");
  h.ws.last().open(protocol);
  return h;
}

/** Settles `promise` into { value } or { error }, so that a test can look without racing. */
const settled = (promise) => promise.then((value) => ({ value }), (error) => ({ error }));

test("frames: a header line, a line feed, the body; in text and binary", () => {
  assert.equal(writeFrame("", '{"text":"hi"}'), '\n{"text":"hi"}');
  assert.equal(writeFrame("req id=3", '{"a":1}'), 'req id=3\n{"a":1}');
  const binary = writeFrame("res id=9", new Uint8Array([0, 10, 255]));
  assert.deepEqual([...new Uint8Array(binary)], [...Buffer.from("res id=9\n"), 0, 10, 255]);
  const read = readFrame(binary);
  assert.equal(read.kind, "res");
  assert.equal(read.id, 9);
  assert.deepEqual([...new Uint8Array(read.body)], [0, 10, 255]);

  assert.deepEqual(readFrame('\n{"a":1}'), { kind: "message", body: '{"a":1}' });
  assert.deepEqual(readFrame("req id=18446744073709551615 x=y\nbody"), { kind: "req", id: "18446744073709551615", body: "body" });
  assert.deepEqual(readFrame("err id=4 code=4001 retry=2%20s\nno"), { kind: "err", id: 4, code: 4001, retry: "2 s", body: "no" });
  // The body may hold line feeds of its own: only the first one ends the header.
  assert.deepEqual(readFrame("res id=1\n\n\n"), { kind: "res", id: 1, body: "\n\n" });

  const broken = (frame) => assert.throws(() => readFrame(frame), (err) => err instanceof ProtocolError && err.frame === frame);
  for (const [frame, message] of [
    ['{"no":"header"}', "crimson.v1: a frame needs a header line ending in \\n (empty for a message)"],
    ["notes s=room:lobby e=k o=1\n{}", "crimson.v1: unknown frame kind `notes`"],
    ["req\n{}", "crimson.v1: a `req` needs an id"],
    ["res id=-1\n", "crimson.v1: `id=-1` is not a decimal number"],
    ["err id=1\n", "crimson.v1: an `err` needs a code"],
    ["err id=1 code=700000\n", "crimson.v1: `code=700000` is not a number in range"],
    ["req id\n", "crimson.v1: `id` is not a key=value field"],
    ["x".repeat(4100), "crimson.v1: no end of header line within 4096 bytes"],
    ["réq id=1\n", "crimson.v1: the header line is not ASCII"],
  ]) {
    broken(frame);
    assert.throws(() => readFrame(frame), { message });
  }
});

test("protocol: true offers crimson.v1.json then crimson.json, and frames every message both ways", async (t) => {
  const { socket, ws, messages } = harness(t, { protocols: "token.abc" });
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  assert.deepEqual(ws.last().protocols, ["crimson.v1.json", "crimson.json", "token.abc"]);
  socket.send({ text: "queued" });
  ws.last().open("crimson.v1.json");
  assert.equal(socket.protocol, "crimson.v1.json");
  socket.send({ text: "now" });
  assert.deepEqual(ws.last().sent, ['\n{"text":"queued"}', '\n{"text":"now"}']);
  ws.last().receive(`\n${reply("hi")}`);
  assert.deepEqual(messages, [{ text: "hi", from: "server", at: 5 }]);
});

test("a server that answers the plain token gets plain frames, and requests fail with NoProtocolError", async (t) => {
  const { socket, ws, messages } = await connected(t, {}, "crimson.json");
  socket.send({ text: "plain" });
  assert.deepEqual(ws.last().sent, ['{"text":"plain"}']);
  ws.last().receive(reply("plain back"));
  assert.equal(messages.length, 1);
  const { error } = await settled(socket.request({ text: "/who" }));
  assert.ok(error instanceof NoProtocolError, String(error));
  assert.equal(socket.openRequests, 0);
});

test("a request is sent as req id=N and resolved by res id=N with the decoded response", async (t) => {
  const { socket, ws, messages } = await connected(t);
  const first = socket.request({ text: "/who" }, { timeoutMs: 1000 });
  const second = socket.request({ text: "hello" });
  assert.deepEqual(ws.last().sent, ['req id=1\n{"text":"/who"}', 'req id=2\n{"text":"hello"}']);
  assert.equal(socket.openRequests, 2);
  // Answers come in any order; a plain message between them is a message.
  ws.last().receive(`res id=2\n${reply("hello")}`);
  ws.last().receive(`\n${reply("broadcast")}`);
  ws.last().receive(`res id=1 extra=ignored\n${reply("2 here")}`);
  assert.deepEqual(await first, { text: "2 here", from: "server", at: 5 });
  assert.deepEqual(await second, { text: "hello", from: "server", at: 5 });
  assert.deepEqual(messages, [{ text: "broadcast", from: "server", at: 5 }]);
  assert.equal(socket.openRequests, 0);
  // A late or unknown answer is dropped; a second answer to the same id too.
  ws.last().receive(`res id=1\n${reply("again")}`);
  ws.last().receive(`res id=77\n${reply("who?")}`);
  assert.equal(messages.length, 1);
});

test("err id=N code=C rejects with RequestRejectedError carrying the code and the text", async (t) => {
  const { socket, ws } = await connected(t);
  const asked = settled(socket.request({ text: "/who" }));
  ws.last().receive("err id=1 code=4003 retry=5\nyou may not ask that");
  const { error } = await asked;
  assert.ok(error instanceof RequestRejectedError);
  assert.equal(error.code, 4003);
  assert.equal(error.reason, "you may not ask that");
  assert.equal(error.retry, "5");
  assert.equal(error.message, "the request was refused (4003): you may not ask that");
  assert.equal(socket.openRequests, 0);
});

test("an answer that does not decode rejects its request with a DecodeError", async (t) => {
  const { socket, ws, errors } = await connected(t);
  const asked = settled(socket.request({ text: "/who" }));
  ws.last().receive('res id=1\n{"text":"x","sender":"s","at":1}');
  const { error } = await asked;
  assert.equal(error.name, "DecodeError");
  assert.match(error.message, /missing field "from"/);
  assert.deepEqual(errors, []);
  assert.equal(socket.openRequests, 0);
});

test("a request times out within a few ms of its deadline, and the table returns to zero", async (t) => {
  const { socket, ws } = await connected(t);
  const started = performance.now();
  const { error } = await settled(socket.request({ text: "/who" }, { timeoutMs: 50 }));
  const took = performance.now() - started;
  assert.ok(error instanceof RequestTimeoutError, String(error));
  assert.equal(error.code, 408);
  assert.equal(error.timeoutMs, 50);
  assert.ok(took >= 49 && took < 50 + 20, `rejected after ${took} ms`);
  assert.equal(socket.openRequests, 0);
  // The answer that comes after is dropped.
  ws.last().receive(`res id=1\n${reply("late")}`);
  assert.equal(socket.openRequests, 0);
});

test("past maxOpenRequests a request fails with TooManyRequestsError and nothing is sent", async (t) => {
  const { socket, ws } = await connected(t, { maxOpenRequests: 2 });
  const a = socket.request({ text: "a" });
  const b = socket.request({ text: "b" });
  const { error } = await settled(socket.request({ text: "c" }));
  assert.ok(error instanceof TooManyRequestsError);
  assert.equal(error.limit, 2);
  assert.equal(ws.last().sent.length, 2);
  ws.last().receive(`res id=1\n${reply("a")}`);
  await a;
  // Room again.
  const c = socket.request({ text: "c" });
  assert.equal(ws.last().sent.at(-1), 'req id=3\n{"text":"c"}');
  ws.last().receive(`res id=2\n${reply("b")}`);
  ws.last().receive(`res id=3\n${reply("c")}`);
  await Promise.all([b, c]);
  assert.equal(socket.openRequests, 0);
});

test("a lost connection fails the requests sent on it with DisconnectedError; never sent again", async (t) => {
  const { socket, ws } = await connected(t);
  const asked = settled(socket.request({ text: "hello" }));
  ws.last().serverClose(1011, "oops");
  const { error } = await asked;
  assert.ok(error instanceof DisconnectedError, String(error));
  assert.match(error.message, /lost \(1011\) before the answer/);
  assert.equal(socket.openRequests, 0);
  // Not connected: a plain request fails at once, and is never queued.
  const { error: now } = await settled(socket.request({ text: "while away" }));
  assert.ok(now instanceof DisconnectedError);
  await until(() => ws.made.length === 2, "a second WebSocket");
  ws.last().open("crimson.v1.json");
  assert.deepEqual(ws.last().sent, []);
  assert.equal(socket.openRequests, 0);
});

test("an idempotent request waits for a connection, and is sent again after a lost one", async (t) => {
  const { socket, ws } = harness(t);
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  socket.send({ text: "queued message" });
  const asked = socket.request({ text: "/who" }, { idempotent: true, timeoutMs: 2000 });
  assert.equal(socket.openRequests, 1);
  ws.last().open("crimson.v1.json");
  // Queued messages first, then the requests that waited.
  assert.deepEqual(ws.last().sent, ['\n{"text":"queued message"}', 'req id=1\n{"text":"/who"}']);
  ws.last().serverClose(1001);
  assert.equal(socket.openRequests, 1);
  await until(() => ws.made.length === 2, "a second WebSocket");
  ws.last().open("crimson.v1.json");
  assert.deepEqual(ws.last().sent, ['req id=1\n{"text":"/who"}']);
  ws.last().receive(`res id=1\n${reply("1 here")}`);
  assert.equal((await asked).text, "1 here");
  assert.equal(socket.openRequests, 0);
});

test("close() rejects every open request, idempotent or not; request while closed is SocketClosedError", async (t) => {
  const { socket, ws } = await connected(t);
  const sent = settled(socket.request({ text: "a" }));
  ws.last().serverClose(1011);
  const waiting = settled(socket.request({ text: "b" }, { idempotent: true }));
  const sentIdem = settled((async () => {
    await until(() => ws.made.length === 2, "a second WebSocket");
    ws.last().open("crimson.v1.json");
    return socket.request({ text: "c" }, { idempotent: true });
  })());
  assert.ok((await sent).error instanceof DisconnectedError);
  await until(() => socket.openRequests === 2, "two open requests");
  socket.close();
  for (const { error } of [await waiting, await sentIdem]) {
    assert.ok(error instanceof DisconnectedError, String(error));
    assert.equal(error.message, "disconnected: the socket was closed");
  }
  assert.equal(socket.openRequests, 0);
  assert.ok((await settled(socket.request({ text: "d" }))).error instanceof SocketClosedError);
});

test("the pending table returns to zero after many requests with random answers, errors, timeouts and disconnects", async (t) => {
  const { socket, ws } = await connected(t, { retry: { initialDelayMs: 1, maxDelayMs: 1 } });
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const outcomes = { answered: 0, refused: 0, timedOut: 0, disconnected: 0 };
  const all = [];
  for (let round = 0; round < 200; round++) {
    if (socket.state !== "connected") {
      await until(() => ws.last().readyState === 0, "a new WebSocket");
      ws.last().open("crimson.v1.json");
    }
    const socketNow = ws.last();
    const before = socketNow.sent.length;
    for (let i = 0; i < 10; i++) {
      all.push(settled(socket.request({ text: `r${round}.${i}` }, { timeoutMs: 5, idempotent: random() < 0.2 })).then(({ value, error }) => {
        if (value) outcomes.answered += 1;
        else if (error instanceof RequestRejectedError) outcomes.refused += 1;
        else if (error instanceof RequestTimeoutError) outcomes.timedOut += 1;
        else if (error instanceof DisconnectedError) outcomes.disconnected += 1;
        else throw error;
      }));
    }
    for (const frame of socketNow.sent.slice(before)) {
      const id = /^req id=(\d+)/.exec(frame)[1];
      const dice = random();
      if (dice < 0.5) socketNow.receive(`res id=${id}\n${reply("ok")}`);
      else if (dice < 0.7) socketNow.receive(`err id=${id} code=500\nnot answered`);
      // else: no answer (a timeout, unless the connection goes first)
    }
    if (random() < 0.2) socketNow.serverClose(1006);
  }
  await Promise.all(all);
  assert.equal(outcomes.answered + outcomes.refused + outcomes.timedOut + outcomes.disconnected, 2000);
  for (const [what, count] of Object.entries(outcomes)) assert.ok(count > 0, `${what}: ${count}`);
  assert.equal(socket.openRequests, 0);
});

test("the server's request is answered by onRequest with res id=N, the id echoed as sent", async (t) => {
  const { socket, ws, messages } = await connected(t);
  const seen = [];
  socket.onRequest(async (request) => {
    seen.push(request);
    await tick(1);
    return { text: `answer to ${request.text}` };
  });
  ws.last().receive(`req id=18446744073709551615\n${reply("ping")}`);
  await until(() => ws.last().sent.length === 1, "an answer");
  assert.deepEqual(ws.last().sent, ['res id=18446744073709551615\n{"text":"answer to ping"}']);
  assert.deepEqual(seen, [{ text: "ping", from: "server", at: 5 }]);
  assert.deepEqual(messages, []); // a request is not a message
});

test("the server's request is refused: by the handler's code, 500 for a throw, 400 undecodable, 500 without a handler", async (t) => {
  const { socket, ws } = await connected(t);
  const stop = socket.onRequest((request) => {
    if (request.text === "forbidden") throw new RequestRejectedError(4003, "not you");
    if (request.text === "crash") throw new Error("the handler broke");
    return { text: "fine" };
  });
  const answers = [];
  const ask = async (id, body) => {
    ws.last().receive(`req id=${id}\n${body}`);
    await until(() => ws.last().sent.length > answers.length, `the answer to ${id}`);
    answers.push(ws.last().sent.at(-1));
  };
  await ask(1, reply("forbidden"));
  await ask(2, reply("crash"));
  await ask(3, '{"text":"x"}');
  stop();
  await ask(4, reply("anyone?"));
  assert.deepEqual(answers, [
    "err id=1 code=4003\nnot you",
    "err id=2 code=500\nthe handler broke",
    'err id=3 code=400\nthe request did not decode: not the expected message: missing field "from"; missing field "at"',
    "err id=4 code=500\nnot answered",
  ]);
});

test("a frame that breaks the protocol is reported and skipped; the socket stays open", async (t) => {
  const { socket, ws, messages, errors } = await connected(t);
  const asked = socket.request({ text: "/who" });
  ws.last().receive(reply("no header"));
  ws.last().receive("notes s=room:lobby e=k3x9 o=42\n{}");
  ws.last().receive("res\n{}");
  ws.last().receive(`res id=1\n${reply("fine")}`);
  assert.equal((await asked).text, "fine");
  assert.deepEqual(errors.map((e) => [e.name, e.message]), [
    ["ProtocolError", "crimson.v1: a frame needs a header line ending in \\n (empty for a message)"],
    ["ProtocolError", "crimson.v1: unknown frame kind `notes`"],
    ["ProtocolError", "crimson.v1: a `res` needs an id"],
  ]);
  assert.deepEqual(messages, []);
  assert.equal(socket.state, "connected");
});

test("protocol: true needs a codec with a token; maxOpenRequests must be above 0", () => {
  const base = { url: "ws://x", webSocket: fakes().factory };
  const { token, ...tokenless } = jsonCodec();
  assert.equal(token, "json");
  assert.throws(() => new CrimsonSocket({ ...base, codec: tokenless, protocol: true }), /token/);
  assert.throws(() => new CrimsonSocket({ ...base, codec: jsonCodec(), maxOpenRequests: 0 }), /maxOpenRequests/);
});
