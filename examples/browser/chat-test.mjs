// Two browser pages on the chat server's page: a message typed in one appears in the other,
// and both reconnect when the server comes back. The pages speak the Crimson protocol
// (crimson.v1.json): "Who is here?" is a request whose answer must count the pages connected
// (a third one joins for a while), and a message sent while connected is a request answered
// once the server took it ("delivered"). The chat server keeps its recent history, so its
// broadcasts are publications of the stream `all`: alice's page reaches the server through a
// TCP proxy of this script's own, which cuts her connection while bob speaks; when she is
// back, what bob said meanwhile appears once each, in order, and "recovered 2"; after the
// server restarts (in memory: its history is gone) both pages say "not recovered:
// epoch_changed". Every frame alice's page sends and receives is held to the protocol's
// framing (a header line: empty for a message, `req id=N` and `resume s= e= o=` up,
// `res id=N`, `sub s= e= o=`, `pub s= e= o=`, `recovered s= e= o= n=` and `lost s= e= o= reason=` down, each
// field well formed), to the protocol's rules (a reconnect's first frame is a resume from
// the last position received; `recovered n=N` is followed by the N publications after it)
// and its body to the TypeScript definitions ts-rs generated from the Rust messages
// (ts/generated/): the same field names, each of the JavaScript type the definition says.
//
//   node chat-test.mjs http://127.0.0.1:PORT/
//
// Protocol with the caller on stdout/stdin: after the first exchange it prints
// "READY-FOR-RESTART" and waits for a line "RESTARTED" on stdin (the caller restarts the
// server on the same port meanwhile); it prints "OK" and exits 0 when everything held.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { createServer, connect } from "node:net";
import { createInterface } from "node:readline";

const url = process.argv[2];
if (!url) {
  console.error("usage: node chat-test.mjs http://127.0.0.1:PORT/");
  process.exit(2);
}

// The fields of a generated definition (`export type T = { a: string, b: number, };`, as
// ts-rs writes a struct of plain fields), as { name: JavaScript typeof }.
function generatedFields(type) {
  const source = readFileSync(new URL(`./ts/generated/${type}.ts`, import.meta.url), "utf8")
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\/\/.*$/gm, "");
  const body = source.match(new RegExp(`export type ${type} = \\{([^{}]*)\\};`));
  if (!body) throw new Error(`ts/generated/${type}.ts: no flat \`export type ${type} = { … }\``);
  const fields = {};
  for (const field of body[1].split(",").map((f) => f.trim()).filter(Boolean)) {
    const [, name, tsType] = field.match(/^"?(\w+)"?\s*:\s*(.+)$/) ?? [];
    if (!["string", "number", "boolean"].includes(tsType)) {
      throw new Error(`ts/generated/${type}.ts: this test knows string, number and boolean fields, not ${JSON.stringify(field)}`);
    }
    fields[name] = tsType;
  }
  if (Object.keys(fields).length === 0) throw new Error(`ts/generated/${type}.ts: no fields`);
  return fields;
}

// What is wrong with `json` as a `type` (an empty list when nothing is).
function shapeProblems(type, fields, json) {
  let value;
  try {
    value = JSON.parse(json);
  } catch {
    return [`not JSON: ${json}`];
  }
  const problems = [];
  for (const [name, jsType] of Object.entries(fields)) {
    if (!(name in value)) problems.push(`${type}: missing "${name}"`);
    else if (typeof value[name] !== jsType) problems.push(`${type}.${name}: ${typeof value[name]}, not ${jsType}`);
  }
  for (const name of Object.keys(value)) {
    if (!(name in fields)) problems.push(`${type}: "${name}" is not in the generated type`);
  }
  return problems.map((p) => `${p} in ${json}`);
}

// The fields of each crimson.v1 kind (docs/protocol.md, section 3), each with how its value
// is written: `number` a decimal u64, `text` percent-encoded UTF-8 (RFC 3986).
const KINDS = {
  up: { "": {}, req: { id: "number" }, resume: { s: "text", e: "text", o: "number" } },
  down: {
    "": {},
    res: { id: "number" },
    sub: { s: "text", e: "text", o: "number" },
    unsub: { s: "text" },
    pub: { s: "text", e: "text", o: "number" },
    recovered: { s: "text", e: "text", o: "number", n: "number" },
    lost: { s: "text", e: "text", o: "number", reason: "text" },
  },
};
// The kinds whose body is a message (the others' is empty).
const WITH_MESSAGE = new Set(["", "req", "res", "pub"]);
const LOST_REASONS = ["history_too_short", "expired", "epoch_changed", "over_limit", "unknown_position", "unavailable", "dropped"];

// A crimson.v1 frame's header, as { kind, fields (decoded), body }, or a string saying what is wrong.
function parseFrame(frame, direction) {
  const end = frame.indexOf("\n");
  if (end < 0) return `a frame without a crimson.v1 header line: ${frame}`;
  const header = frame.slice(0, end);
  const [kind, ...words] = header === "" ? [""] : header.split(" ");
  const expected = KINDS[direction][kind];
  if (!expected) return `a crimson.v1 kind ${JSON.stringify(kind)} that does not go ${direction}: ${JSON.stringify(header)}`;
  const fields = {};
  for (const word of words) {
    const [, key, value] = word.match(/^([a-z]+)=(.*)$/) ?? [];
    if (key === undefined) return `${JSON.stringify(word)} is not a key=value field in ${JSON.stringify(header)}`;
    if (!(key in expected)) return `${JSON.stringify(key)} is not a field of \`${kind}\` in ${JSON.stringify(header)}`;
    if (expected[key] === "number") {
      if (!/^\d{1,20}$/.test(value) || BigInt(value) >= 2n ** 64n) return `${key}=${value} is not a u64 in ${JSON.stringify(header)}`;
      fields[key] = BigInt(value);
    } else {
      if (!/^(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})*$/.test(value)) return `${key}=${value} is not percent-encoded in ${JSON.stringify(header)}`;
      fields[key] = decodeURIComponent(value);
    }
  }
  const missing = Object.keys(expected).filter((key) => !(key in fields));
  if (missing.length) return `\`${kind}\` without ${missing.join(", ")}: ${JSON.stringify(header)}`;
  if (kind === "lost" && !LOST_REASONS.includes(fields.reason)) return `an unknown lost reason in ${JSON.stringify(header)}`;
  if (kind !== "" && kind !== "req" && kind !== "res" && fields.s !== "all") {
    return `a stream other than the chat's \`all\` in ${JSON.stringify(header)}`;
  }
  return { kind, fields, body: frame.slice(end + 1) };
}

// What is wrong with a crimson.v1 frame going `direction`: its header, and its body (a
// `type` for a message, else empty).
function frameProblems(type, fields, frame, direction) {
  const parsed = parseFrame(frame, direction);
  if (typeof parsed === "string") return [parsed];
  if (!WITH_MESSAGE.has(parsed.kind)) return parsed.body === "" ? [] : [`a \`${parsed.kind}\` with a body: ${frame}`];
  return shapeProblems(type, fields, parsed.body);
}

// The protocol's rules on alice's frames, connection by connection (CDP's requestId):
// - on every connection after the first, the first frame sent is a `resume` from the last
//   position received (the first connection's `sub`, then the epoch of the last `pub`, the
//   highest offset in it; after a `lost`, the `lost` frame's own);
// - `recovered s e o n=N` is followed by the N publications of `s` after the resume's offset,
//   in order, the last at `o`.
class StreamRules {
  problems = [];
  counts = { sub: 0, pub: 0, resume: 0, recovered: 0, lost: 0 };
  #position = null; // { e, o } of `all` as alice's page last received it
  #connections = new Map(); // requestId → { first, sentAny, resumedFrom, recovering }
  #connection(id) {
    if (!this.#connections.has(id)) {
      const first = this.#connections.size === 0;
      this.#connections.set(id, { first, sentAny: false, resumedFrom: null, recovering: null });
    }
    return this.#connections.get(id);
  }
  sent(id, frame) {
    const parsed = parseFrame(frame, "up");
    if (typeof parsed === "string") return;
    const c = this.#connection(id);
    if (!c.first && !c.sentAny && this.#position !== null && parsed.kind !== "resume") {
      this.problems.push(`a reconnect's first frame is not a resume: ${JSON.stringify(frame)}`);
    }
    c.sentAny = true;
    if (parsed.kind !== "resume") return;
    this.counts.resume += 1;
    const { e, o } = parsed.fields;
    if (this.#position === null || e !== this.#position.e || o !== this.#position.o) {
      this.problems.push(`resumed from ${e}/${o}, not from the last position received ${JSON.stringify(this.#position, (_, v) => (typeof v === "bigint" ? `${v}` : v))}`);
    }
    c.resumedFrom = o;
  }
  received(id, frame) {
    const parsed = parseFrame(frame, "down");
    if (typeof parsed === "string") return;
    const c = this.#connection(id);
    const { kind, fields } = parsed;
    if (kind === "sub") {
      // Where the page follows `all` from when it has no position yet; on a reconnect the
      // page's resume settles it (the sub was queued before the resume was read).
      this.counts.sub += 1;
      if (this.#position === null) this.#position = { e: fields.e, o: fields.o };
    } else if (kind === "pub") {
      this.counts.pub += 1;
      if (c.recovering) {
        const r = c.recovering;
        r.next += 1n;
        if (fields.e !== r.e || fields.o !== r.next) this.problems.push(`recovered publication ${fields.e}/${fields.o}, expected ${r.e}/${r.next}`);
        r.left -= 1n;
        if (r.left === 0n) {
          if (r.next !== r.last) this.problems.push(`the recovery ended at ${r.next}, not at recovered's o=${r.last}`);
          c.recovering = null;
        }
      }
      const p = this.#position;
      if (p === null || p.e !== fields.e || fields.o > p.o) this.#position = { e: fields.e, o: fields.o };
    } else if (kind === "recovered") {
      this.counts.recovered += 1;
      if (c.resumedFrom === null) this.problems.push(`a recovered without a resume: ${JSON.stringify(frame)}`);
      else if (fields.n > 0n) c.recovering = { e: fields.e, next: c.resumedFrom, left: fields.n, last: fields.o };
    } else if (kind === "lost") {
      this.counts.lost += 1;
      if (c.resumedFrom === null) this.problems.push(`a lost without a resume: ${JSON.stringify(frame)}`);
      this.#position = { e: fields.e, o: fields.o };
    }
  }
  finish() {
    for (const c of this.#connections.values()) {
      if (c.recovering) this.problems.push(`a recovery never finished: ${c.recovering.left} publications missing`);
    }
  }
}

// A TCP proxy to `target` (host:port) for one page: `cut()` drops every connection through
// it and holds new ones (unanswered, as a network that is down) until `restore()`.
async function tcpProxy(target) {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const pairs = new Set();
  // The connections held while cut; null while the way is open.
  let held = null;
  const pipe = (client) => {
    const upstream = connect({ host, port });
    const pair = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
  };
  const server = createServer((client) => {
    if (held === null) pipe(client);
    else {
      client.pause();
      client.on("error", () => client.destroy());
      held.push(client);
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${server.address().port}`,
    cut() {
      held = [];
      for (const [client, upstream] of [...pairs]) {
        client.destroy();
        upstream.destroy();
      }
    },
    restore() {
      const waiting = held ?? [];
      held = null;
      for (const client of waiting) if (!client.destroyed) pipe(client);
    },
    close() {
      this.cut();
      server.close();
    },
  };
}

const down = generatedFields("ChatResponse");
const up = generatedFields("ChatMessage");
const frames = { sent: 0, received: 0, requests: 0, answers: 0, problems: [] };
const rules = new StreamRules();
// Console errors the page's own checks print ("crimson: DecodeError: …"), and scripts that
// failed to load or run: any of them fails the test.
const pageProblems = [];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

// Lines from the caller, kept until asked for (one may come before the test waits for it).
const lines = createInterface({ input: process.stdin });
const pending = [];
const waiting = [];
lines.on("line", (line) => (waiting.length ? waiting.shift()(line) : pending.push(line)));
const nextLine = () => (pending.length ? Promise.resolve(pending.shift()) : new Promise((resolve) => waiting.push(resolve)));

// Clicks "Who is here?" on `page` and waits for the answer it shows; it must say `count`.
async function askWho(page, count) {
  const answer = await whoAnswer(page);
  if (answer !== `${count} here`) throw new Error(`"Who is here?" was answered ${JSON.stringify(answer)}, not "${count} here"`);
}

// The same, asking again (for up to 10 s) until the answer is `count`: a page that just left
// is counted until the server has seen its close.
async function askWhoUntil(page, count) {
  const deadline = Date.now() + 10000;
  let answer;
  while ((answer = await whoAnswer(page)) !== `${count} here`) {
    if (Date.now() > deadline) throw new Error(`"Who is here?" still says ${JSON.stringify(answer)}, not "${count} here"`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function whoAnswer(page) {
  const lines = page.locator("#messages li.who");
  const before = await lines.count();
  await page.click("#who");
  const line = lines.nth(before);
  await line.waitFor({ timeout: 10000 });
  return (await line.textContent()).replace(/^who is here/, "");
}

// A page is surely in the chat once the server has broadcast its own message back to it.
async function join(page, nick, words) {
  await page.fill("#nick", nick);
  await page.fill("#input", words);
  await page.click("#send");
  await page.locator("#messages li", { hasText: `${nick}: ${words}` }).waitFor({ timeout: 10000 });
}

// alice's way to the server, which the test cuts for a while.
const proxy = await tcpProxy(new URL(url).host);
const aliceUrl = `http://${proxy.address}/`;

// The texts of the messages `page` shows, in order.
const shown = (page) => page.locator("#messages li.message").evaluateAll((lis) => lis.map((li) => li.lastChild.textContent));

try {
  const alice = await (await browser.newContext()).newPage();
  const bob = await (await browser.newContext()).newPage();
  // What the server answered to the page's WebSocket handshake (Chromium offers
  // permessage-deflate on every connection).
  const extensions = [];
  const subprotocols = [];
  const cdp = await alice.context().newCDPSession(alice);
  await cdp.send("Network.enable");
  cdp.on("Network.webSocketHandshakeResponseReceived", (event) => {
    const headers = event.response.headers;
    const key = Object.keys(headers).find((k) => k.toLowerCase() === "sec-websocket-extensions");
    extensions.push(key ? headers[key] : "none");
    const protocol = Object.keys(headers).find((k) => k.toLowerCase() === "sec-websocket-protocol");
    subprotocols.push(protocol ? headers[protocol] : "none");
  });
  cdp.on("Network.webSocketFrameReceived", ({ requestId, response }) => {
    if (response.opcode !== 1) return; // Text frames only: this route speaks JSON
    frames.received += 1;
    if (/^res id=\d+\n/.test(response.payloadData)) frames.answers += 1;
    frames.problems.push(...frameProblems("ChatResponse", down, response.payloadData, "down"));
    rules.received(requestId, response.payloadData);
  });
  cdp.on("Network.webSocketFrameSent", ({ requestId, response }) => {
    if (response.opcode !== 1) return;
    frames.sent += 1;
    if (/^req id=\d+\n/.test(response.payloadData)) frames.requests += 1;
    frames.problems.push(...frameProblems("ChatMessage", up, response.payloadData, "up"));
    rules.sent(requestId, response.payloadData);
  });
  const watch = (page) => {
    page.on("console", (msg) => {
      console.error(`[page] ${msg.text()}`);
      if (msg.type() === "error" && msg.text().startsWith("crimson:")) pageProblems.push(msg.text());
    });
    page.on("pageerror", (err) => pageProblems.push(`page error: ${err.message}`));
    page.on("requestfailed", (req) => pageProblems.push(`request failed: ${req.url()}`));
    page.on("response", (res) => {
      if (res.status() >= 400 && new URL(res.url()).pathname.startsWith("/js/")) {
        pageProblems.push(`${res.status()} for ${res.url()}`);
      }
    });
  };
  for (const [page, pageUrl] of [[alice, aliceUrl], [bob, url]]) {
    watch(page);
    await page.goto(pageUrl);
    await page.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 10000 });
  }
  if (subprotocols.length === 0 || !subprotocols.every((p) => p === "crimson.v1.json")) {
    throw new Error(`the page did not get the Crimson protocol: Sec-WebSocket-Protocol ${JSON.stringify(subprotocols)}`);
  }
  console.error(`[test] Sec-WebSocket-Protocol: ${subprotocols[0]}`);
  if (!extensions.some((e) => e.includes("permessage-deflate"))) {
    throw new Error(`the page did not negotiate permessage-deflate: ${JSON.stringify(extensions)}`);
  }
  console.error(`[test] Sec-WebSocket-Extensions: ${extensions[0]}`);

  await join(alice, "alice", "alice is here");
  await join(bob, "bob", "bob is here");
  await alice.fill("#input", "hello from the browser");
  await alice.click("#send");
  await bob.locator("#messages li", { hasText: "alice: hello from the browser" }).waitFor({ timeout: 10000 });
  await alice.locator("#messages li", { hasText: "alice: hello from the browser" }).waitFor({ timeout: 10000 });
  // Sent while connected, the message was a request: the server's answer says it took it.
  await alice.locator("#delivery", { hasText: /^delivered / }).waitFor({ timeout: 10000 });

  // "Who is here?": two pages, then three while carol is in, then two again.
  await askWho(alice, 2);
  const carol = await (await browser.newContext()).newPage();
  watch(carol);
  await carol.goto(url);
  await carol.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 10000 });
  await askWho(carol, 3);
  await askWho(bob, 3);
  await carol.context().close();
  await askWhoUntil(alice, 2);
  // A message long enough to be compressed both ways.
  const long = "a long message that permessage-deflate squeezes: " + "la ".repeat(200);
  await bob.fill("#input", long);
  await bob.click("#send");
  await alice.locator("#messages li", { hasText: long.trim() }).waitFor({ timeout: 10000 });

  // alice's connection is cut while bob speaks: when she is back, what he said meanwhile is
  // recovered from the server's history, once each and in order, and the page says so.
  const before = await shown(alice);
  proxy.cut();
  await alice.locator("#state", { hasText: /retrying|reconnecting/ }).waitFor({ timeout: 10000 });
  for (const words of ["said while alice was away", "said while alice was still away"]) {
    await bob.fill("#input", words);
    await bob.click("#send");
    await bob.locator("#messages li", { hasText: `bob: ${words}` }).waitFor({ timeout: 10000 });
  }
  proxy.restore();
  await alice.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 20000 });
  const recoveredLine = alice.locator("#messages li.recovered").first();
  await recoveredLine.waitFor({ timeout: 10000 });
  const told = (await recoveredLine.textContent()).replace(/^all/, "");
  if (told !== "recovered 2") throw new Error(`after her connection was cut alice's page says "${told}", not "recovered 2"`);
  const after = await shown(alice);
  const missed = ["bob: said while alice was away", "bob: said while alice was still away"];
  if (JSON.stringify(after) !== JSON.stringify([...before, ...missed])) {
    throw new Error(`after the recovery alice's page shows ${JSON.stringify(after.slice(before.length - 1))}, not the last one before and ${JSON.stringify(missed)}`);
  }
  console.error(`[test] alice's page recovered ${JSON.stringify(missed)} after her connection was cut`);

  // The page's run-time check is the generated type's: it refuses a message whose field was
  // renamed, as a server out of step with the page would send it.
  const refused = await alice.evaluate(() => window.crimsonChat.problems({ text: "hi", sender: "s", at: 1 }));
  if (JSON.stringify(refused) !== JSON.stringify(['missing field "from"', 'unexpected field "sender"'])) {
    throw new Error(`the page's check of ChatResponse said ${JSON.stringify(refused)}`);
  }

  console.log("READY-FOR-RESTART");
  await bob.locator("#state", { hasText: /retrying/ }).waitFor({ timeout: 10000 });
  await alice.locator("#state", { hasText: /retrying/ }).waitFor({ timeout: 10000 });
  // Sent while the server is away: queued, and sent once the page is back.
  await alice.fill("#input", "sent while away");
  await alice.click("#send");
  if ((await nextLine()) !== "RESTARTED") throw new Error("expected RESTARTED");

  for (const page of [alice, bob]) {
    await page.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 20000 });
    // The server's history went with it: the pages are told they may have missed messages.
    await page.locator("#messages li.not-recovered", { hasText: "not recovered: epoch_changed" }).waitFor({ timeout: 10000 });
  }
  await alice.locator("#messages li", { hasText: "alice: sent while away" }).waitFor({ timeout: 10000 });
  await join(alice, "alice", "alice is back");
  await join(bob, "bob", "bob is back");
  await bob.fill("#input", "back again");
  await bob.click("#send");
  await alice.locator("#messages li", { hasText: "bob: back again" }).waitFor({ timeout: 10000 });
  // After the restart, the requests work on the new connections: both pages are counted.
  await askWho(bob, 2);
  await askWho(alice, 2);

  // Every message alice's page shows, once: nothing recovered twice, nothing held and lost.
  const all = await shown(alice);
  const twice = all.filter((text, i) => all.indexOf(text) !== i);
  if (twice.length) throw new Error(`alice's page shows these more than once: ${JSON.stringify(twice)}`);

  if (pageProblems.length) throw new Error(`the page reported problems:\n${pageProblems.join("\n")}`);
  rules.finish();
  if (rules.problems.length) throw new Error(`frames that break the protocol's rules:\n${rules.problems.join("\n")}`);
  if (frames.problems.length) {
    throw new Error(`frames that do not match the generated types:\n${frames.problems.join("\n")}`);
  }
  // alice sent 4 messages and saw at least 8 (her own and bob's) across both servers.
  if (frames.sent < 4 || frames.received < 8) {
    throw new Error(`too few frames checked: ${frames.sent} sent, ${frames.received} received`);
  }
  // alice asked "Who is here?" three times and sent messages as requests: each one answered.
  if (frames.requests < 5 || frames.answers !== frames.requests) {
    throw new Error(`alice sent ${frames.requests} requests and got ${frames.answers} answers`);
  }
  // Two reconnects (the cut, the restart): a resume each; a recovery, then a lost stream.
  const { sub, pub, resume, recovered, lost } = rules.counts;
  if (sub < 3 || pub < 8 || resume < 2 || recovered < 1 || lost < 1) {
    throw new Error(`too few stream frames checked: ${JSON.stringify(rules.counts)}`);
  }
  console.error(
    `[test] ${frames.sent} frames sent (${frames.requests} requests, ${resume} resumes) and ${frames.received} received (${frames.answers} answers, ${pub} publications, ${recovered} recovered, ${lost} lost) are crimson.v1 frames of ChatMessage ${JSON.stringify(up)} and ChatResponse ${JSON.stringify(down)}`,
  );
  console.log("OK");
} catch (err) {
  console.error(`browser test failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  proxy.close();
  await browser.close();
  lines.close();
}
