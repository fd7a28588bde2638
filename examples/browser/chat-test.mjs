// Two browser pages on the chat server's page: a message typed in one appears in the other,
// and both reconnect when the server comes back.
//
//   node chat-test.mjs http://127.0.0.1:PORT/
//
// Protocol with the caller on stdout/stdin: after the first exchange it prints
// "READY-FOR-RESTART" and waits for a line "RESTARTED" on stdin (the caller restarts the
// server on the same port meanwhile); it prints "OK" and exits 0 when everything held.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const url = process.argv[2];
if (!url) {
  console.error("usage: node chat-test.mjs http://127.0.0.1:PORT/");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));

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
  const cdp = await alice.context().newCDPSession(alice);
  await cdp.send("Network.enable");
  cdp.on("Network.webSocketHandshakeResponseReceived", (event) => {
    const headers = event.response.headers;
    const key = Object.keys(headers).find((k) => k.toLowerCase() === "sec-websocket-extensions");
    extensions.push(key ? headers[key] : "none");
  });
  for (const page of [alice, bob]) {
    page.on("console", (msg) => console.error(`[page] ${msg.text()}`));
    await page.goto(url);
    await page.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 10000 });
  }
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
  // A message long enough to be compressed both ways.
  const long = "a long message that permessage-deflate squeezes: " + "la ".repeat(200);
  await bob.fill("#input", long);
  await bob.click("#send");
  await alice.locator("#messages li", { hasText: long.trim() }).waitFor({ timeout: 10000 });

  console.log("READY-FOR-RESTART");
  await bob.locator("#state", { hasText: /retrying/ }).waitFor({ timeout: 10000 });
  if ((await nextLine()) !== "RESTARTED") throw new Error("expected RESTARTED");

  for (const page of [alice, bob]) {
    await page.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 20000 });
  }
  await join(alice, "alice", "alice is back");
  await join(bob, "bob", "bob is back");
  await bob.fill("#input", "back again");
  await bob.click("#send");
  await alice.locator("#messages li", { hasText: "bob: back again" }).waitFor({ timeout: 10000 });
  console.log("OK");
} catch (err) {
  console.error(`browser test failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  lines.close();
}
