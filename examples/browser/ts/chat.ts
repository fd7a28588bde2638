// The chat page: a CrimsonSocket to /chat whose messages are the Rust server's own types,
// as ts-rs wrote them (./generated/, regenerated with
// `cargo run -p crimson-examples --features ts --bin export-ts`). A field renamed or retyped
// on the server is a compile error here, not a blank line at run time.
//
// It speaks the Crimson protocol (crimson.v1): "Who is here?" is a request the server answers,
// and a message sent while connected is a request too, answered with the server's copy once
// the server has taken it ("delivered"). The server keeps the chat's recent history: after a
// reconnect the page gets what was said meanwhile, once each and in order ("recovered N"),
// or is told that it missed messages and why ("not recovered: REASON").

import {
  type Check,
  CrimsonSocket,
  type Fields,
  isNumber,
  isString,
  jsonCodec,
  object,
  QueueFullError,
  type RequestType,
  type StateChange,
} from "crimson-socket";
import type { ChatMessage } from "./generated/ChatMessage.js";
import type { ChatResponse } from "./generated/ChatResponse.js";

// One check per field of ChatResponse: the compiler holds this list to the generated type
// (a field missing, extra or of another type does not compile), and every message from the
// server is checked against it before the page sees it.
const chatResponseFields: Fields<ChatResponse> = { text: isString, from: isString, at: isNumber };
const isChatResponse = object<ChatResponse>(chatResponseFields);

const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/chat`;

// The server's `impl CrimsonRequest for ChatMessage { type Response = ChatResponse; }`: a
// ChatMessage sent as a request is answered with a ChatResponse.
type ChatRequests = RequestType<ChatMessage, ChatResponse>;

const socket = new CrimsonSocket<ChatMessage, ChatResponse, ChatRequests>({
  url,
  codec: jsonCodec({ validate: isChatResponse }),
  // Ask for crimson.v1.json (then crimson.json): requests need it.
  protocol: true,
  // A page wants to stay in the chat: reconnect after any close, even a normal one, and
  // come back quickly (250 ms, doubling up to 10 s).
  abnormalClose: () => true,
  retry: { initialDelayMs: 250, maxDelayMs: 10000 },
  maxQueued: 50,
});

function element<T extends HTMLElement>(id: string, type: abstract new () => T): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`the page has no <${type.name}> #${id}`);
  return found;
}

const state = element("state", HTMLElement);
const messages = element("messages", HTMLUListElement);
const form = element("form", HTMLFormElement);
const nick = element("nick", HTMLInputElement);
const input = element("input", HTMLInputElement);
const who = element("who", HTMLButtonElement);
const delivery = element("delivery", HTMLElement);

function stateText(change: StateChange): string {
  switch (change.state) {
    case "connected":
      return "connected";
    case "connecting":
      return change.attempt ? `reconnecting (attempt ${change.attempt})` : "connecting";
    case "retrying":
      return `closed (${change.code ?? "?"}); retrying in ${((change.delayMs ?? 0) / 1000).toFixed(1)} s`;
    case "closed":
      return `closed (${change.code ?? "?"})`;
  }
}

function line(className: string, label: string, text: string): void {
  const li = document.createElement("li");
  li.className = className;
  const span = document.createElement("span");
  span.className = "from";
  span.textContent = label;
  li.append(span, document.createTextNode(text));
  messages.append(li);
  li.scrollIntoView();
}

function show(message: ChatResponse): void {
  line("message", new Date(message.at).toLocaleTimeString(), message.text);
}

socket.onState((change) => {
  state.textContent = stateText(change);
  state.className = change.state;
});
socket.onMessage(show);
// After a reconnect: the messages said meanwhile were shown (before this), or they are gone.
socket.onRecovered((stream, count) => line("recovered", stream, `recovered ${count}`));
socket.onNotRecovered((stream, reason) => line("not-recovered", stream, `not recovered: ${reason}`));
socket.onError((error) => {
  // A message that does not match the generated types, or messages never sent: say so on
  // the page and in the console, never in silence.
  console.error(`crimson: ${error.name}: ${error.message}`);
  line("error", error.name, error.message);
});

/** What a failed request says on the page: its error's name and message. */
function failed(what: string, error: unknown): void {
  const e = error instanceof Error ? error : new Error(String(error));
  console.error(`crimson: ${what}: ${e.name}: ${e.message}`);
  line("error", `${what}: ${e.name}`, e.message);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  const message: ChatMessage = { text: `${nick.value.trim() || "anonymous"}: ${text}` };
  input.value = "";
  if (socket.state === "connected" && socket.protocol.startsWith("crimson.v1.")) {
    // Connected: a request, which the server answers once it has taken the message (everyone,
    // this page too, gets it as a plain message). Not idempotent: cut off before the answer,
    // it is not sent again, and the page says so.
    delivery.textContent = "sending…";
    socket.request(message, { timeoutMs: 5000 }).then(
      (copy) => {
        delivery.textContent = `delivered ${new Date(copy.at).toLocaleTimeString()}`;
      },
      (error: unknown) => {
        delivery.textContent = "not delivered";
        failed("not delivered", error);
      },
    );
    return;
  }
  try {
    // Not connected: queued for the next connection (a plain message, at most once).
    socket.send(message);
    delivery.textContent = "queued";
  } catch (error) {
    if (!(error instanceof QueueFullError)) throw error;
    line("error", "not sent", error.message);
  }
});

who.addEventListener("click", () => {
  // A request the server answers with how many are in the room: { text: "2 here", … }.
  socket.request({ text: "/who" }, { timeoutMs: 5000 }).then(
    (answer) => line("who", "who is here", answer.text),
    (error: unknown) => failed("who is here", error),
  );
});

socket.connect();

// For the browser test: the checks the page runs, so that it can hold real server
// messages to the same generated type.
declare global {
  interface Window {
    crimsonChat?: { isChatResponse: Check<ChatResponse>; problems(value: unknown): string[] };
  }
}
window.crimsonChat = { isChatResponse, problems: (value) => isChatResponse.problems(value) };
