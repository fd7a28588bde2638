// Streams and recovery (crimson.v1, docs/protocol.md section 3, "Streams and recovery") on
// fake WebSockets: the `pub`, `resume`, `recovered` and `lost` headers, live publications
// delivered once each, the resume sent first on every reconnect, the race between live
// publications and the resume's answer, lost streams, epochs, and a server without the
// protocol.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CrimsonSocket, isNumber, isString, jsonCodec, MAX_HEADER, MAX_STREAMS, NotRecoveredError, object,
  ProtocolError, readFrame,
} from "../dist/index.js";
import { fakes, until } from "./fake-websocket.mjs";

const isChatResponse = object({ text: isString, from: isString, at: isNumber });
const body = (text) => JSON.stringify({ text, from: "server", at: 5 });
const pub = (stream, epoch, offset, text = `${stream}/${epoch}/${offset}`) =>
  `pub s=${encodeURIComponent(stream)} e=${epoch} o=${offset}\n${body(text)}`;

/**
 * A socket that asks for crimson.v1 on fake WebSockets, recording the texts of the messages
 * it delivers, its recovery events and its errors; closed when the test ends.
 */
function harness(t, options = {}) {
  const ws = fakes();
  const socket = new CrimsonSocket({
    url: "ws://127.0.0.1:1/chat",
    codec: jsonCodec({ validate: isChatResponse }),
    protocol: true,
    webSocket: ws.factory,
    random: () => 0,
    retry: { initialDelayMs: 1, maxDelayMs: 1 },
    ...options,
  });
  const texts = [];
  const events = [];
  const errors = [];
  socket.onMessage((message) => texts.push(message.text));
  socket.onRecovered((stream, count) => events.push(`recovered ${stream} ${count}`));
  socket.onNotRecovered((stream, reason) => events.push(`not recovered ${stream}: ${reason}`));
  socket.onError((error) => errors.push(error));
  t.after(() => socket.close());
  /** Opens the next WebSocket with `protocol`; returns it. */
  const open = async (protocol = "crimson.v1.json") => {
    await until(() => ws.made.length > 0 && ws.last().readyState === 0, "a new WebSocket");
    ws.last().open(protocol);
    return ws.last();
  };
  /** Drops the current connection, as a network failure does. */
  const drop = () => ws.last().serverClose(1006);
  return { socket, ws, texts, events, errors, open, drop };
}

async function connected(t, options) {
  const h = harness(t, options);
  h.socket.connect();
  await h.open();
  return h;
}

const positions = (socket) => socket.positions.map((p) => `${p.stream} ${p.epoch} ${p.offset}`);

test("headers: pub, resume, recovered and lost, their fields percent-decoded and their offsets u64 bigints", () => {
  assert.deepEqual(readFrame(`pub s=room%3Acaf%C3%A9%20lobby e=9c1f%2F04 o=41 future=x\n${body("hi")}`), {
    kind: "pub", stream: "room:café lobby", epoch: "9c1f/04", offset: 41n, body: body("hi"),
  });
  assert.deepEqual(readFrame("resume s=all e=k o=18446744073709551615\n"), {
    kind: "resume", stream: "all", epoch: "k", offset: 18446744073709551615n, body: "",
  });
  assert.deepEqual(readFrame("recovered s=all e=k o=43 n=2\n"), {
    kind: "recovered", stream: "all", epoch: "k", offset: 43n, count: 2n, body: "",
  });
  // An empty epoch and offset 0: the server has no such stream now.
  assert.deepEqual(readFrame("lost s=room%3Aa e= o=0 reason=epoch_changed\n"), {
    kind: "lost", stream: "room:a", epoch: "", offset: 0n, reason: "epoch_changed", body: "",
  });
  assert.deepEqual(readFrame("lost s=all e=k o=7 reason=a%20reason%21\n").reason, "a reason!");
  // Binary frames too: the header is ASCII, the body bytes.
  const binary = new Uint8Array([...Buffer.from("pub s=all e=k o=9007199254740993\n"), 0, 10, 255]).buffer;
  const read = readFrame(binary);
  assert.equal(read.kind, "pub");
  assert.equal(read.offset, 9007199254740993n, "past 2^53, exact");
  assert.deepEqual([...new Uint8Array(read.body)], [0, 10, 255]);

  // A room name of 1024 bytes, percent-encoded, fits in a header.
  const room = `room:${"é".repeat(512)}`;
  const long = `pub s=${encodeURIComponent(room)} e=k o=1`;
  assert.ok(long.length > 3000 && long.length <= MAX_HEADER, `${long.length}`);
  assert.equal(readFrame(`${long}\n{}`).stream, room);
  assert.equal(MAX_HEADER, 4096);

  for (const [frame, message] of [
    ["pub s=x\n", "crimson.v1: a `pub` needs `e`"],
    ["pub e=1 o=1\n", "crimson.v1: a `pub` needs `s`"],
    ["resume s=all e=1\n", "crimson.v1: a `resume` needs `o`"],
    ["resume s=%zz e=1 o=1\n", "crimson.v1: `s=%zz` is not percent-encoded UTF-8"],
    ["pub s=all e=%C3 o=1\n", "crimson.v1: `e=%C3` is not percent-encoded UTF-8"],
    ["pub s=all e=1 o=-1\n", "crimson.v1: `o=-1` is not a number in range"],
    ["pub s=all e=1 o=18446744073709551616\n", "crimson.v1: `o=18446744073709551616` is not a number in range"],
    ["pub s=all e=1 o=1e3\n", "crimson.v1: `o=1e3` is not a number in range"],
    ["recovered s=all e=1 o=1\n", "crimson.v1: a `recovered` needs `n`"],
    ["recovered s=all e=1 o=1 n=x\n", "crimson.v1: `n=x` is not a number in range"],
    ["lost s=all e=1 o=1\n", "crimson.v1: a `lost` needs a `reason`"],
    [`pub s=${"a".repeat(MAX_HEADER)}\n`, `crimson.v1: no end of header line within ${MAX_HEADER} bytes`],
  ]) {
    assert.throws(() => readFrame(frame), (err) => err instanceof ProtocolError && err.message === message && err.frame === frame, frame);
  }
});

test("live publications are delivered once each, in order; offsets compare as u64, positions are kept", async (t) => {
  const { socket, ws, texts, events, errors } = await connected(t);
  const server = ws.last();
  server.receive(pub("all", "k", 9));
  server.receive(pub("all", "k", 10)); // "10" < "9" as text: compared as numbers
  server.receive(pub("all", "k", 10)); // a duplicate
  server.receive(pub("all", "k", 9)); // older
  server.receive(pub("room:a", "r", 9007199254740992n));
  server.receive(pub("room:a", "r", 9007199254740993n)); // the same Number as the one before
  server.receive(pub("room:a", "r", 9007199254740993n));
  server.receive(`\n${body("plain")}`); // a message to this session alone: no stream
  assert.deepEqual(texts, ["all/k/9", "all/k/10", "room:a/r/9007199254740992", "room:a/r/9007199254740993", "plain"]);
  assert.deepEqual(positions(socket), ["all k 10", "room:a r 9007199254740993"]);
  assert.equal(typeof socket.positions[0].offset, "bigint");
  assert.deepEqual(events, []);
  assert.deepEqual(errors, []);
});

test("a sub frame is where to resume from, even when nothing was published; a resumed stream skips it", async (t) => {
  const { socket, ws, drop, open, texts, errors } = await connected(t);
  ws.last().receive("sub s=all e=k o=7\n");
  ws.last().receive("sub s=room%3Aa e=r o=0\n");
  assert.deepEqual(positions(socket), ["all k 7", "room:a r 0"]);
  drop();
  await until(() => socket.state === "retrying", "retrying");
  await open();
  assert.deepEqual(ws.last().sent, ["resume s=all e=k o=7\n", "resume s=room%3Aa e=r o=0\n"]);
  // The new session's sub comes before the resume's answer: skipped.
  ws.last().receive("sub s=all e=k o=9\n");
  ws.last().receive("recovered s=all e=k o=9 n=2\n");
  ws.last().receive(pub("all", "k", 8));
  ws.last().receive(pub("all", "k", 9));
  assert.deepEqual(texts, ["all/k/8", "all/k/9"]);
  assert.deepEqual(positions(socket), ["all k 9", "room:a r 0"]);
  assert.deepEqual(errors, []);
});

test("every reconnect sends one resume per stream followed, first, before the queued messages", async (t) => {
  const { socket, ws, drop, open } = await connected(t);
  assert.deepEqual(ws.last().sent, [], "nothing to resume on the first connection");
  ws.last().receive(pub("all", "k", 3));
  ws.last().receive(pub("room:café lobby", "e/1", 18446744073709551615n));
  drop();
  await until(() => socket.state === "retrying", "retrying");
  socket.send({ text: "queued" });
  // Even what the application sends as soon as it hears "connected" goes after the resumes.
  const stop = socket.onState((change) => change.state === "connected" && socket.send({ text: "hello again" }));
  await open();
  stop();
  assert.deepEqual(ws.last().sent, [
    "resume s=all e=k o=3\n",
    "resume s=room%3Acaf%C3%A9%20lobby e=e%2F1 o=18446744073709551615\n",
    '\n{"text":"hello again"}',
    '\n{"text":"queued"}',
  ]);
  // Unanswered, they are sent again from the same positions on the next connection.
  drop();
  await open();
  assert.equal(ws.last().sent.length, 2);
  assert.equal(ws.last().sent[0], "resume s=all e=k o=3\n");
});

test("on a binary codec's connection, publications and resumes are Binary frames", async (t) => {
  const codec = {
    token: "cbor", // any binary codec: here JSON in bytes, which is all the test needs
    frames: "binary",
    encode: (message) => new TextEncoder().encode(JSON.stringify(message)),
    decode: (frame) => JSON.parse(new TextDecoder().decode(frame)),
  };
  const { socket, ws, texts, drop, open } = harness(t, { codec });
  socket.connect();
  await open("crimson.v1.cbor");
  const binary = (text) => new Uint8Array(Buffer.from(text)).buffer;
  ws.last().receive(binary(pub("room:a", "k", 7)));
  assert.deepEqual(texts, ["room:a/k/7"]);
  drop();
  const server = await open("crimson.v1.cbor");
  assert.equal(server.sent.length, 1);
  assert.ok(server.sent[0] instanceof ArrayBuffer);
  assert.equal(Buffer.from(server.sent[0]).toString(), "resume s=room%3Aa e=k o=7\n");
  server.receive(binary("recovered s=room%3Aa e=k o=8 n=1\n"));
  server.receive(binary(pub("room:a", "k", 8)));
  assert.deepEqual(texts, ["room:a/k/7", "room:a/k/8"]);
});

test("the race: live publications before the answer are held, then merged after the recovered ones, once each, in order", async (t) => {
  const { ws, texts, events, drop, open } = await connected(t);
  ws.last().receive(pub("room:a", "e", 3));
  ws.last().receive(pub("all", "k", 1));
  drop();
  const server = await open();
  // room:a's live publications arrive before its answer (the session was already in the room).
  server.receive(pub("room:a", "e", 6));
  server.receive(pub("room:a", "e", 5));
  // all is answered at once: nothing missed.
  server.receive("recovered s=all e=k o=1 n=0\n");
  server.receive(pub("all", "k", 2));
  assert.deepEqual(texts, ["room:a/e/3", "all/k/1", "all/k/2"], "room:a holds 5 and 6");
  assert.deepEqual(events, ["recovered all 0"]);
  server.receive("recovered s=room%3Aa e=e o=5 n=2\n");
  server.receive(pub("room:a", "e", 4));
  assert.deepEqual(texts.slice(3), ["room:a/e/4"]);
  server.receive(pub("room:a", "e", 5));
  // 5 recovered; the held 5 is a duplicate, the held 6 is new; then the event.
  assert.deepEqual(texts.slice(3), ["room:a/e/4", "room:a/e/5", "room:a/e/6"]);
  assert.deepEqual(events, ["recovered all 0", "recovered room:a 2"]);
  // Live again: 6 is a duplicate, 7 is new.
  server.receive(pub("room:a", "e", 6));
  server.receive(pub("room:a", "e", 7));
  assert.deepEqual(texts.slice(3), ["room:a/e/4", "room:a/e/5", "room:a/e/6", "room:a/e/7"]);
});

test("a recovery delivers what was missed once each even when the held ones overlap it", async (t) => {
  const { socket, ws, texts, events, drop, open } = await connected(t);
  ws.last().receive(pub("all", "k", 1));
  drop();
  const server = await open();
  for (const offset of [4, 2, 3, 4]) server.receive(pub("all", "k", offset));
  server.receive("recovered s=all e=k o=4 n=3\n");
  for (const offset of [2, 3, 4]) server.receive(pub("all", "k", offset));
  assert.deepEqual(texts, ["all/k/1", "all/k/2", "all/k/3", "all/k/4"]);
  assert.deepEqual(events, ["recovered all 3"]);
  assert.deepEqual(positions(socket), ["all k 4"]);
});

test("lost: the gap is told, what was held is still delivered in order, and the stream goes on from the lost position", async (t) => {
  const { socket, ws, texts, events, errors, drop, open } = await connected(t);
  ws.last().receive(pub("all", "k", 3));
  drop();
  let server = await open();
  server.receive(pub("all", "k", 90));
  server.receive(pub("all", "k", 89));
  server.receive("lost s=all e=k o=95 reason=over_limit\n");
  assert.deepEqual(texts, ["all/k/3", "all/k/89", "all/k/90"]);
  assert.deepEqual(events, ["not recovered all: over_limit"]);
  assert.deepEqual(positions(socket), ["all k 95"]);
  server.receive(pub("all", "k", 95));
  server.receive(pub("all", "k", 96));
  assert.deepEqual(texts.slice(3), ["all/k/96"]);
  assert.deepEqual(errors, []);

  // The server restarted: the stream is gone (an empty epoch, offset 0); the new one starts at 1.
  drop();
  server = await open();
  assert.deepEqual(server.sent, ["resume s=all e=k o=96\n"]);
  server.receive("lost s=all e= o=0 reason=epoch_changed\n");
  assert.deepEqual(events.at(-1), "not recovered all: epoch_changed");
  server.receive(pub("all", "n", 1));
  assert.deepEqual(texts.at(-1), "all/n/1");
  assert.deepEqual(positions(socket), ["all n 1"]);
});

test("unsub: a room left is forgotten and not resumed; left while its resume waited, what was held is delivered and the gap told", async (t) => {
  const { socket, ws, texts, events, errors, drop, open } = await connected(t);
  ws.last().receive("sub s=all e=k o=0\n");
  ws.last().receive("sub s=room%3Aa e=r o=2\n");
  ws.last().receive(pub("room:a", "r", 3));
  ws.last().receive("unsub s=room%3Aa\n");
  assert.deepEqual(positions(socket), ["all k 0"]);
  assert.deepEqual(texts, ["room:a/r/3"]);
  ws.last().receive("sub s=room%3Ab e=r o=4\n");
  drop();
  const server = await open();
  assert.deepEqual(server.sent, ["resume s=all e=k o=0\n", "resume s=room%3Ab e=r o=4\n"]);
  server.receive(pub("room:b", "r", 9));
  server.receive(pub("room:b", "r", 8));
  server.receive("unsub s=room%3Ab\n");
  assert.deepEqual(texts.slice(1), ["room:b/r/8", "room:b/r/9"]);
  assert.deepEqual(events, ["not recovered room:b: left the room before the resume was answered"]);
  assert.deepEqual(positions(socket), ["all k 0"]);
  server.receive("unsub s=room%3Ac\n");
  assert.deepEqual(errors, []);
  assert.throws(() => readFrame("unsub e=x\n"), (err) => err instanceof ProtocolError && err.message === "crimson.v1: an `unsub` needs `s`");
});

test("a lost stream of a restarted server: live publications of the new epoch held before it are delivered", async (t) => {
  const { socket, ws, texts, events, drop, open } = await connected(t);
  ws.last().receive(pub("all", "old", 41));
  drop();
  const server = await open();
  server.receive(pub("all", "new", 2));
  server.receive(pub("all", "new", 1));
  server.receive("lost s=all e= o=0 reason=epoch_changed\n");
  assert.deepEqual(texts, ["all/old/41", "all/new/1", "all/new/2"]);
  assert.deepEqual(events, ["not recovered all: epoch_changed"]);
  assert.deepEqual(positions(socket), ["all new 2"]);
});

test("a publication of another epoch starts the stream anew, even at a lower offset", async (t) => {
  const { socket, ws, texts, events } = await connected(t);
  const server = ws.last();
  server.receive(pub("all", "k", 41));
  server.receive(pub("all", "m", 1));
  server.receive(pub("all", "m", 2));
  server.receive(pub("all", "m", 2));
  assert.deepEqual(texts, ["all/k/41", "all/m/1", "all/m/2"]);
  assert.deepEqual(positions(socket), ["all m 2"]);
  assert.deepEqual(events, []);
});

test("without an onNotRecovered handler, a gap is a NotRecoveredError on onError", async (t) => {
  const ws = fakes();
  const socket = new CrimsonSocket({
    url: "ws://127.0.0.1:1/chat", codec: jsonCodec(), protocol: true, webSocket: ws.factory, random: () => 0,
    retry: { initialDelayMs: 1, maxDelayMs: 1 },
  });
  t.after(() => socket.close());
  const errors = [];
  socket.onError((error) => errors.push(error));
  socket.connect();
  await until(() => ws.made.length === 1, "a WebSocket");
  ws.last().open("crimson.v1.json");
  ws.last().receive(pub("room:a", "k", 1));
  ws.last().serverClose(1006);
  await until(() => ws.made.length === 2, "a second WebSocket");
  ws.last().open("crimson.v1.json");
  ws.last().receive("lost s=room%3Aa e=k o=9 reason=history_too_short\n");
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof NotRecoveredError);
  assert.equal(errors[0].stream, "room:a");
  assert.equal(errors[0].reason, "history_too_short");
  assert.equal(errors[0].message, "messages of `room:a` were missed and cannot be recovered: history_too_short");
});

test("reconnecting to a server without the protocol: every stream is not recovered, and its position forgotten", async (t) => {
  const { socket, ws, texts, events, drop, open } = await connected(t);
  ws.last().receive(pub("all", "k", 3));
  ws.last().receive(pub("room:a", "r", 8));
  drop();
  const server = await open("crimson.json");
  assert.deepEqual(server.sent, [], "no resume on a plain connection");
  const why = "the server did not agree to the Crimson protocol (crimson.v1)";
  assert.deepEqual(events, [`not recovered all: ${why}`, `not recovered room:a: ${why}`]);
  assert.deepEqual(socket.positions, []);
  server.receive(body("plain"));
  assert.deepEqual(texts, ["all/k/3", "room:a/r/8", "plain"]);
  // Nothing to resume, nothing more to tell, on the next connections.
  drop();
  const again = await open();
  assert.deepEqual(again.sent, []);
  assert.equal(events.length, 2);
});

test("a connection lost during a recovery drops what it held; the next one resumes from what was delivered", async (t) => {
  const { socket, ws, texts, events, drop, open } = await connected(t);
  ws.last().receive(pub("all", "k", 1));
  drop();
  let server = await open();
  server.receive(pub("all", "k", 5));
  server.receive("recovered s=all e=k o=4 n=3\n");
  server.receive(pub("all", "k", 2));
  drop();
  server = await open();
  assert.deepEqual(server.sent, ["resume s=all e=k o=2\n"]);
  server.receive("recovered s=all e=k o=5 n=3\n");
  for (const offset of [3, 4, 5]) server.receive(pub("all", "k", offset));
  assert.deepEqual(texts, ["all/k/1", "all/k/2", "all/k/3", "all/k/4", "all/k/5"]);
  assert.deepEqual(events, ["recovered all 3"]);
  assert.deepEqual(positions(socket), ["all k 5"]);
});

test("held publications are bounded: past maxHeld, what is held is delivered in order and the gap told", async (t) => {
  const { socket, ws, texts, events, drop, open } = await connected(t, { maxHeld: 3 });
  ws.last().receive(pub("all", "k", 1));
  ws.last().receive(pub("room:a", "r", 1));
  drop();
  const server = await open();
  server.receive(pub("room:a", "r", 2)); // held
  server.receive(pub("all", "k", 4));
  server.receive(pub("all", "k", 3));
  assert.equal(texts.length, 2, "three held across the streams");
  server.receive(pub("all", "k", 5)); // a fourth: all stops waiting
  assert.deepEqual(texts.slice(2), ["all/k/3", "all/k/4", "all/k/5"]);
  assert.deepEqual(events, ["not recovered all: no answer to the resume (3 publications held)"]);
  // The late answer changes nothing already delivered; room:a still recovers.
  server.receive("recovered s=all e=k o=5 n=0\n");
  server.receive("recovered s=room%3Aa e=r o=2 n=1\n");
  server.receive(pub("room:a", "r", 2));
  assert.deepEqual(texts.slice(5), ["room:a/r/2"]);
  assert.deepEqual(events.slice(1), ["recovered room:a 1"]);
  assert.deepEqual(positions(socket), ["all k 5", "room:a r 2"]);
});

test(`at most ${MAX_STREAMS} streams are followed: the others are delivered, not recovered, and that is said once`, async (t) => {
  const { socket, ws, texts, errors, drop, open } = await connected(t);
  for (let i = 0; i < MAX_STREAMS + 2; i++) ws.last().receive(pub(`room:${i}`, "k", 1));
  assert.equal(texts.length, MAX_STREAMS + 2);
  assert.equal(socket.positions.length, MAX_STREAMS);
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /^following 64 streams already: publications of `room:64`/);
  drop();
  const server = await open();
  assert.equal(server.sent.length, MAX_STREAMS);
  assert.ok(server.sent.every((frame) => frame.startsWith("resume ")));
});

test("a resume from the server, and a recovery frame that does not parse, are protocol errors, skipped", async (t) => {
  const { ws, texts, events, errors } = await connected(t);
  ws.last().receive("resume s=all e=k o=1\n");
  ws.last().receive("recovered s=all e=k o=1\n");
  ws.last().receive(pub("all", "k", 1));
  assert.deepEqual(errors.map((e) => [e.name, e.message]), [
    ["ProtocolError", "crimson.v1: a `resume` from the server (it goes from client to server)"],
    ["ProtocolError", "crimson.v1: a `recovered` needs `n`"],
  ]);
  assert.deepEqual(texts, ["all/k/1"]);
  assert.deepEqual(events, []);
});

test("maxHeld must be a whole number", () => {
  assert.throws(() => new CrimsonSocket({ url: "ws://x", codec: jsonCodec(), maxHeld: -1 }), /maxHeld/);
  assert.throws(() => new CrimsonSocket({ url: "ws://x", codec: jsonCodec(), maxHeld: 1.5 }), /maxHeld/);
});
