// A raw Engine.IO WebSocket client: the `ws` package with an awaitable message queue, for
// tests that must see or send individual Engine.IO packets (the official clients hide them).
//
//   const c = new WsClient(url); await c.opened; const m = await c.next();
//
// Text frames come out as strings, binary frames as Buffers. With autoPong, "2" pings are
// answered with "3" and not queued. Used by the eio, sio and hostile suites; byte-level
// WebSocket tests use ./raw.mjs instead.
import { WebSocket } from "ws";
import { rst } from "./raw.mjs";
import { Checks, withTimeout } from "./wait.mjs";

export class WsClient {
  constructor(url, { autoPong = false, headers } = {}) {
    this.url = url;
    this.autoPong = autoPong;
    this.queue = []; // received, not yet taken
    this.checks = new Checks();
    this.isClosed = false;
    this.closeInfo = null;
    this.error = null;
    this.unexpectedStatus = null;
    this.ws = new WebSocket(url, { headers, perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("close", () => reject(new Error(`websocket ${url} closed before opening`)));
    });
    this.opened.catch(() => {});
    this.ws.on("error", (err) => {
      this.error = err;
      // a refused handshake: "Unexpected server response: 400"
      const m = /Unexpected server response: (\d+)/.exec(err.message);
      if (m) this.unexpectedStatus = Number(m[1]);
    });
    this.ws.on("message", (data, isBinary) => {
      const m = isBinary ? Buffer.from(data) : data.toString("utf8");
      if (this.autoPong && m === "2") {
        this.send("3");
        return;
      }
      this.queue.push(m);
      this.checks.notify();
    });
    // Resolves with { code, reason } once the websocket has closed.
    this.whenClosed = new Promise((resolve) => {
      this.ws.once("close", (code, reason) => {
        this.isClosed = true;
        this.closeInfo = { code, reason: reason.toString() };
        this.checks.notify();
        resolve(this.closeInfo);
      });
    });
  }

  // The first queued message for which pred holds (taken off the queue; the others stay),
  // waiting up to timeoutMs for one; rejects once the websocket has closed without one.
  take(pred, timeoutMs = 5000, what = "a websocket message") {
    return this.checks.wait(
      () => {
        const i = this.queue.findIndex(pred);
        if (i >= 0) return this.queue.splice(i, 1)[0];
        if (this.isClosed) {
          throw new Error(`websocket closed${this.closeInfo ? ` (${this.closeInfo.code})` : ""} while waiting for ${what}`);
        }
        return undefined;
      },
      timeoutMs,
      `timed out after ${timeoutMs} ms waiting for ${what}`,
    );
  }

  // The next message, waiting up to timeoutMs.
  next(timeoutMs = 5000) {
    return this.take(() => true, timeoutMs);
  }

  // The next message that is not a heartbeat ping; the pings are answered unless answer is
  // false (a client that never answers, to be timed out).
  async nextNonPing(timeoutMs = 5000, { answer = true } = {}) {
    for (;;) {
      const m = await this.next(timeoutMs);
      if (m !== "2") return m;
      if (answer) this.send("3");
    }
  }

  // Reads the first message as an Engine.IO open packet ("0{...}") and returns it parsed;
  // anything else terminates the websocket and throws.
  async readOpen(timeoutMs = 5000) {
    const first = await this.next(timeoutMs);
    if (typeof first !== "string" || !first.startsWith("0")) {
      this.terminate();
      throw new Error(`first websocket message is not an open packet: ${JSON.stringify(first)}`);
    }
    return JSON.parse(first.slice(1));
  }

  send(data) {
    this.ws.send(data);
  }

  // Waits for the close event (bounded); resolves with { code, reason }.
  waitClosed(timeoutMs = 5000) {
    return withTimeout(this.whenClosed, timeoutMs, "the websocket to close");
  }

  close() {
    if (!this.isClosed) this.ws.close();
    return this.waitClosed().catch(() => this.terminate());
  }

  terminate() {
    if (!this.isClosed) this.ws.terminate();
  }

  // Abortive close: TCP RST instead of FIN (no close frame).
  reset() {
    if (!rst(this.ws._socket)) this.ws.terminate();
  }
}
