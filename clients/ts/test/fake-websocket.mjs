// A stand-in for the browser's WebSocket that a test drives by hand: it opens, receives and
// closes when told to, and records what it was sent.

export class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = FakeWebSocket.CONNECTING;
    this.protocol = "";
    this.binaryType = "blob";
    this.sent = [];
    this.closedWith = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
  }

  send(data) {
    if (this.readyState !== FakeWebSocket.OPEN) throw new Error(`send in readyState ${this.readyState}`);
    this.sent.push(data);
  }

  close(code, reason) {
    const wasConnecting = this.readyState === FakeWebSocket.CONNECTING;
    this.closedWith = { code, reason };
    this.readyState = FakeWebSocket.CLOSED;
    // As a browser does: closing a socket that never opened fails it with 1006.
    queueMicrotask(() => this.onclose?.({ code: wasConnecting ? 1006 : (code ?? 1005), reason: reason ?? "" }));
  }

  // --- what the test does as the network and the server --------------------------------
  open(protocol = "") {
    this.readyState = FakeWebSocket.OPEN;
    this.protocol = protocol;
    this.onopen?.({});
  }

  receive(data) {
    this.onmessage?.({ data });
  }

  serverClose(code, reason = "") {
    this.readyState = FakeWebSocket.CLOSED;
    this.onclose?.({ code, reason });
  }
}

/** A factory for CrimsonSocket's `webSocket` option that keeps every socket it made. */
export function fakes() {
  const made = [];
  const factory = (url, protocols) => {
    const ws = new FakeWebSocket(url, protocols);
    made.push(ws);
    return ws;
  };
  return { made, factory, last: () => made[made.length - 1] };
}

export const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits (up to a second) until `condition()` holds. */
export async function until(condition, what) {
  const deadline = Date.now() + 1000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await tick(1);
  }
}
