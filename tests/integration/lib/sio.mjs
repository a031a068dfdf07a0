// Helpers around the official socket.io-client, for the suites that drive a Socket.IO server
// with it (sio, chat): the transports to run over, bounded waits for a socket's connection,
// and a Recorder of everything a socket receives.
import { Checks, withTimeout } from "./wait.mjs";

// Client options per transport.
export const WS = { name: "websocket", opts: { transports: ["websocket"] } };
export const POLLING = { name: "polling", opts: { transports: ["polling"] } };
export const TRANSPORTS = [WS, POLLING];

// Resolves once socket is connected; rejects on connect_error (the Error, with .data).
export function connected(s, ms = 5000) {
  if (s.connected) return Promise.resolve(s);
  let onConnect, onError;
  const p = new Promise((resolve, reject) => {
    onConnect = () => resolve(s);
    onError = (err) => reject(err);
    s.once("connect", onConnect);
    s.once("connect_error", onError);
  });
  return withTimeout(p, ms, "connect").finally(() => {
    s.off("connect", onConnect);
    s.off("connect_error", onError);
  });
}

// The connect_error a socket gets (rejects if it connects instead).
export function connectError(s, ms = 5000) {
  return connected(s, ms).then(
    () => {
      throw new Error("connected, expected a connect_error");
    },
    (err) => err,
  );
}

// Records every event a socket receives (onAny), in order, and lets tests await them.
// pick(args) is what of() and next() give for each event: its whole argument list unless the
// suite says otherwise (the chat suites want the first argument).
export class Recorder {
  constructor(socket, { pick = (args) => args } = {}) {
    this.socket = socket;
    this.pick = pick;
    this.events = []; // {ev, args}
    this.cursor = new Map(); // event → number consumed by next()
    this.checks = new Checks();
    socket.onAny((ev, ...args) => {
      this.events.push({ ev, args });
      this.checks.notify();
    });
  }

  // pick(args) of every `ev` received so far.
  of(ev) {
    return this.argsOf(ev).map(this.pick);
  }

  // The argument lists of every `ev` received so far.
  argsOf(ev) {
    return this.events.filter((e) => e.ev === ev).map((e) => e.args);
  }

  count(ev) {
    return this.events.reduce((n, e) => n + (e.ev === ev), 0);
  }

  names() {
    return this.events.map((e) => e.ev);
  }

  // Resolves with pred()'s value once it is truthy (re-checked on each event), bounded.
  until(pred, ms = 5000, what = "a condition on received events") {
    return this.checks.wait(
      () => pred() || undefined,
      ms,
      () => {
        const names = this.names();
        return `timed out after ${ms} ms waiting for ${what}; got ${names.length} events [${names.slice(-30).join(", ")}]`;
      },
    );
  }

  // pick(args) of the next not-yet-consumed `ev` (each call consumes one).
  async next(ev, ms = 5000) {
    const k = this.cursor.get(ev) ?? 0;
    await this.until(() => this.count(ev) > k, ms, `event "${ev}" #${k + 1}`);
    this.cursor.set(ev, k + 1);
    return this.of(ev)[k];
  }

  // Waits until `ev` was received n times in all.
  waitCount(ev, n, ms = 5000) {
    return this.until(() => this.count(ev) >= n, ms, `${n} x "${ev}"`);
  }

  clear() {
    this.events = [];
    this.cursor.clear();
  }
}
