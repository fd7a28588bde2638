// Two browser pages on the chat server's page: a message typed in one appears in the other,
// and both reconnect when the server comes back. The pages speak the Crimson protocol
// (crimson.v1.json): "Who is here?" is a request whose answer must count the pages connected
// (a third one joins for a while), and a message sent while connected is a request answered
// once the server took it ("delivered"). Every frame alice's page sends and receives is held
// to the protocol's framing (a header line: empty for a message, `req id=N` up, `res id=N`
// down) and its body to the TypeScript definitions ts-rs generated from the Rust messages
// (ts/generated/): the same field names, each of the JavaScript type the definition says.
//
//   node chat-test.mjs http://127.0.0.1:PORT/
//
// Protocol with the caller on stdout/stdin: after the first exchange it prints
// "READY-FOR-RESTART" and waits for a line "RESTARTED" on stdin (the caller restarts the
// server on the same port meanwhile); it prints "OK" and exits 0 when everything held.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
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

// What is wrong with a crimson.v1 frame: its header must be one of `headers`, its body a `type`.
function frameProblems(type, fields, frame, headers) {
  const end = frame.indexOf("\n");
  if (end < 0) return [`a frame without a crimson.v1 header line: ${frame}`];
  const header = frame.slice(0, end);
  if (!headers.test(header)) return [`an unexpected crimson.v1 header ${JSON.stringify(header)} in ${frame}`];
  return shapeProblems(type, fields, frame.slice(end + 1));
}

const down = generatedFields("ChatResponse");
const up = generatedFields("ChatMessage");
const frames = { sent: 0, received: 0, requests: 0, answers: 0, problems: [] };
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
  cdp.on("Network.webSocketFrameReceived", ({ response }) => {
    if (response.opcode !== 1) return; // Text frames only: this route speaks JSON
    frames.received += 1;
    if (/^res id=\d+\n/.test(response.payloadData)) frames.answers += 1;
    frames.problems.push(...frameProblems("ChatResponse", down, response.payloadData, /^(|res id=\d+)$/));
  });
  cdp.on("Network.webSocketFrameSent", ({ response }) => {
    if (response.opcode !== 1) return;
    frames.sent += 1;
    if (/^req id=\d+\n/.test(response.payloadData)) frames.requests += 1;
    frames.problems.push(...frameProblems("ChatMessage", up, response.payloadData, /^(|req id=\d+)$/));
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
  for (const page of [alice, bob]) {
    watch(page);
    await page.goto(url);
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

  if (pageProblems.length) throw new Error(`the page reported problems:\n${pageProblems.join("\n")}`);
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
  console.error(
    `[test] ${frames.sent} frames sent (${frames.requests} requests) and ${frames.received} received (${frames.answers} answers) are crimson.v1 frames of ChatMessage ${JSON.stringify(up)} and ChatResponse ${JSON.stringify(down)}`,
  );
  console.log("OK");
} catch (err) {
  console.error(`browser test failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  lines.close();
}
