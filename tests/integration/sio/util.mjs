// Helpers shared by the Socket.IO integration suites (tests/integration/sio/*.test.mjs).
//
// They drive tests/servers/sio_test_server.c (contract: ./README.md) with the official
// socket.io-client, plus a few raw Engine.IO clients (ws / plain HTTP) for what the official
// client cannot be made to do (never answer pings, send garbage, hold no GET).
import http from "node:http";
import { WebSocket } from "ws";
import { io } from "socket.io-client";
import { before, afterEach, after } from "node:test";
import { startServer, waitUntil, sleep } from "../lib/server.mjs";

export { waitUntil, sleep };

export const SIO_PATH = "/socket.io/";

// The transports every suite runs over. UPGRADE is the client's default: polling first, then
// an upgrade to websocket.
export const WS = { name: "websocket", opts: { transports: ["websocket"] } };
export const POLLING = { name: "polling", opts: { transports: ["polling"] } };
export const UPGRADE = { name: "polling+upgrade", opts: {} };
export const TRANSPORTS = [WS, POLLING];
export const ALL_TRANSPORTS = [WS, POLLING, UPGRADE];

export function startSio(args = [], opts) {
  return startServer("sio_test_server", args, opts);
}

// A bounded wait on a promise.
// Registers the hooks most suites share: one sio_test_server for the describe block,
// every client closed and the server idle after each test, the server stopped (and
// checked for a clean exit) at the end. set(srv, clients) hands both to the suite.
export function sioServerHooks(set, args = []) {
  let srv;
  let clients;
  before(async () => {
    srv = await startSio(args);
    clients = new Clients(srv);
    set(srv, clients);
  });
  afterEach(async () => {
    clients.closeAll();
    await waitIdle(srv);
  });
  after(async () => {
    clients?.closeAll();
    await srv?.stop();
  });
}

export function withTimeout(promise, ms, what = "operation") {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`));
    }, ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// Resolves with the arguments of the next `event` on emitter (bounded).
export function once(emitter, event, ms = 5000) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => resolve(args);
    emitter.once(event, handler);
  });
  return withTimeout(p, ms, `event "${event}"`).catch((e) => {
    emitter.off(event, handler);
    throw e;
  });
}

// Normalises binary values (Buffer, ArrayBuffer, typed arrays) to Buffers, recursively, so that
// deepEqual compares contents whatever type the client produced.
export function normBin(v) {
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v)) return v.map(normBin);
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = normBin(x);
    return o;
  }
  return v;
}

// Records every event a socket receives (onAny), in order, and lets tests await them.
export class Recorder {
  constructor(socket) {
    this.socket = socket;
    this.events = []; // {ev, args}
    this.cursor = new Map(); // event → number consumed by next()
    this.checks = new Set();
    socket.onAny((ev, ...args) => {
      this.events.push({ ev, args });
      for (const c of [...this.checks]) c();
    });
  }

  // All args lists received so far for `ev`.
  of(ev) {
    return this.events.filter((e) => e.ev === ev).map((e) => e.args);
  }

  count(ev) {
    return this.of(ev).length;
  }

  names() {
    return this.events.map((e) => e.ev);
  }

  // Resolves when pred() is truthy (re-checked on each event), bounded.
  until(pred, ms = 5000, what = "a condition on received events") {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        let v;
        try {
          v = pred();
        } catch (e) {
          this.checks.delete(check);
          clearTimeout(timer);
          reject(e);
          return;
        }
        if (v) {
          this.checks.delete(check);
          clearTimeout(timer);
          resolve(v);
        }
      };
      timer = setTimeout(() => {
        this.checks.delete(check);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; got [${this.names().join(", ")}]`));
      }, ms);
      this.checks.add(check);
      check();
    });
  }

  // The args of the next not-yet-consumed `ev` (each call consumes one).
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
}

// Tracks the sockets (and their managers) a test group opens, so that all get closed.
export class Clients {
  constructor(srv) {
    this.srv = srv;
    this.sockets = new Set();
  }

  // A new socket on a new Manager (forceNew), not awaited. nsp: "/" or "/admin"...
  open(nsp = "/", opts = {}) {
    const s = io(this.srv.url + (nsp === "/" ? "" : nsp), {
      forceNew: true,
      reconnectionDelay: 50,
      reconnectionDelayMax: 200,
      timeout: 5000,
      ...opts,
    });
    this.sockets.add(s);
    return s;
  }

  // A further socket on an existing socket's Manager (multiplexed on its connection).
  openOn(socket, nsp, opts = {}) {
    const s = socket.io.socket(nsp, opts);
    this.sockets.add(s);
    if (!s.active) s.connect();
    return s;
  }

  // open() + awaits its connection; rejects with the connect_error.
  async connect(nsp = "/", opts = {}) {
    const s = this.open(nsp, opts);
    await connected(s);
    return s;
  }

  // open() with a Recorder attached before any packet can arrive; awaits the welcome.
  async connectRec(nsp = "/", opts = {}) {
    const s = this.open(nsp, opts);
    const rec = new Recorder(s);
    await connected(s);
    await rec.next("welcome");
    return { s, rec };
  }

  closeOne(s) {
    s.disconnect();
    s.io._close();
    this.sockets.delete(s);
  }

  // Disconnects every socket first (each says goodbye to its namespace), then closes the
  // Managers: closing a Manager while one of its sockets is still connected would be a
  // "transport close" for that socket, which with --recovery keeps a session.
  closeAll() {
    for (const s of this.sockets) s.disconnect();
    for (const s of this.sockets) s.io._close();
    this.sockets.clear();
  }
}

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

// emitWithAck with a bound (the client's own timeout: rejects with an Error on expiry).
export function ask(s, ev, ...args) {
  return s.timeout(5000).emitWithAck(ev, ...args);
}

// ---- dropping a transport abruptly, from the client side ----

// An http.Agent without keep-alive that remembers its live sockets, for polling clients
// (pass it as the `agent` option; see droppable()). cut(downMs) destroys them, which fails the
// pending long-poll the way a network drop would, and for downMs makes new connections fail
// (ECONNREFUSED), so that the client cannot tell the server goodbye ("1" in a POST) nor
// reconnect before then. (Aborting the client's XHR instead trips a bug in
// xmlhttprequest-ssl: its error handler dereferences the request abort() cleared.)
export class TrackingAgent extends http.Agent {
  constructor() {
    super({ keepAlive: false });
    this.live = new Set();
    this.downUntil = 0;
  }

  createConnection(opts, cb) {
    const down = Date.now() < this.downUntil;
    const sock = super.createConnection(down ? { ...opts, port: 1 } : opts, cb);
    this.live.add(sock);
    sock.on("close", () => this.live.delete(sock));
    return sock;
  }

  cut(downMs = 0) {
    this.downUntil = Date.now() + downMs;
    for (const sock of this.live) sock.destroy();
  }

  restore() {
    this.downUntil = 0;
  }
}

// Ends the "network down" period of dropTransport() early.
export function restoreNetwork(s) {
  s.io.opts.agent.restore();
}

// Options for a client whose transport dropTransport() can cut.
export function droppable(opts) {
  return { ...opts, agent: new TrackingAgent() };
}

// Drops the socket's transport abruptly, from the client side: websocket → the ws is
// terminated (TCP closed without a close frame); polling → the TCP connections of its HTTP
// requests are destroyed (the client must have been created with droppable() options). With
// droppable() options, new connections are refused for downMs (restoreNetwork() ends that).
export function dropTransport(s, { downMs = 0 } = {}) {
  const agent = s.io.opts.agent instanceof TrackingAgent ? s.io.opts.agent : null;
  const t = s.io.engine.transport;
  if (t.name === "websocket") {
    if (agent) agent.downUntil = Date.now() + downMs;
    t.ws.terminate();
  } else if (agent) {
    agent.cut(downMs);
  } else {
    throw new Error("dropTransport: a polling client needs droppable() options");
  }
}

// ---- HTTP ----

// One HTTP request on its own connection (no keep-alive pooling).
export function request(url, { method = "GET", body, headers = {}, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined) h["content-length"] = Buffer.byteLength(body);
    const req = http.request(url, { method, headers: h, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${url} timed out`)), timeoutMs);
    req.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") });
      });
    });
    req.end(body);
  });
}

// GET /stats → {clients, sockets, recoverySessions, recoveryPackets, connections, disconnects}.
export async function stats(srv) {
  const r = await request(`${srv.url}/stats`);
  if (r.status !== 200) throw new Error(`/stats answered ${r.status}: ${r.text}`);
  return JSON.parse(r.text);
}

// Waits until pred(stats) holds; the error names the last stats seen.
export async function waitStats(srv, pred, what = "stats condition", timeoutMs = 10000) {
  let last;
  try {
    await waitUntil(
      async () => {
        last = await stats(srv);
        return pred(last);
      },
      { timeoutMs, intervalMs: 30, what },
    );
  } catch (e) {
    throw new Error(`${e.message}; last /stats: ${JSON.stringify({ ...last, disconnects: last?.disconnects?.slice(-10) })}`);
  }
  return last;
}

// Waits until no client and no socket is left.
export function waitIdle(srv, timeoutMs = 10000) {
  return waitStats(srv, (s) => s.clients === 0 && s.sockets === 0, "clients 0 and sockets 0", timeoutMs);
}

// The server-side disconnect reasons recorded for socket `id` (optionally in nsp), waiting
// until there are at least n of them. Returns the reasons, oldest first.
export async function serverReasons(srv, id, { nsp, n = 1, timeoutMs = 5000 } = {}) {
  const st = await waitStats(
    srv,
    (s) => s.disconnects.filter((d) => d.id === id && (!nsp || d.nsp === nsp)).length >= n,
    `${n} server-side disconnect(s) of ${id}${nsp ? ` in ${nsp}` : ""}`,
    timeoutMs,
  );
  return st.disconnects.filter((d) => d.id === id && (!nsp || d.nsp === nsp)).map((d) => d.reason);
}

// ---- raw Engine.IO clients ----

// A raw websocket Engine.IO session. Messages come out as strings / Buffers.
export class RawWs {
  constructor(srv, { autoPong = false } = {}) {
    this.queue = [];
    this.waiters = [];
    this.autoPong = autoPong;
    this.isClosed = false;
    this.ws = new WebSocket(`${srv.wsUrl}${SIO_PATH}?EIO=4&transport=websocket`, { perMessageDeflate: false });
    this.ws.on("error", () => {});
    this.ws.on("message", (data, isBinary) => {
      const m = isBinary ? Buffer.from(data) : data.toString("utf8");
      if (this.autoPong && m === "2") {
        this.ws.send("3");
        return;
      }
      const w = this.waiters.shift();
      if (w) w(m);
      else this.queue.push(m);
    });
    this.closed = new Promise((resolve) =>
      this.ws.once("close", (code) => {
        this.isClosed = true;
        resolve(code);
      }),
    );
  }

  async open() {
    const first = await this.next();
    if (!first.startsWith("0")) throw new Error(`not an open packet: ${first}`);
    this.handshake = JSON.parse(first.slice(1));
    return this.handshake;
  }

  next(ms = 5000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    let w;
    const p = new Promise((resolve) => {
      w = resolve;
      this.waiters.push(w);
    });
    return withTimeout(p, ms, "a raw websocket message").catch((e) => {
      const i = this.waiters.indexOf(w);
      if (i >= 0) this.waiters.splice(i, 1);
      throw e;
    });
  }

  // Next message that is not a ping (pings are not answered here).
  async nextNonPing(ms = 5000) {
    for (;;) {
      const m = await this.next(ms);
      if (m !== "2") return m;
    }
  }

  send(m) {
    this.ws.send(m);
  }

  waitClosed(ms = 5000) {
    return withTimeout(this.closed, ms, "the raw websocket to close");
  }

  terminate() {
    if (!this.isClosed) this.ws.terminate();
  }
}

// A raw long-polling Engine.IO session: the test decides when GETs are sent.
export class RawPolling {
  constructor(srv) {
    this.srv = srv;
  }

  url() {
    return `${this.srv.url}${SIO_PATH}?EIO=4&transport=polling${this.sid ? `&sid=${this.sid}` : ""}`;
  }

  async open() {
    const r = await request(this.url());
    if (r.status !== 200 || !r.text.startsWith("0")) throw new Error(`bad handshake ${r.status} ${r.text}`);
    this.handshake = JSON.parse(r.text.slice(1));
    this.sid = this.handshake.sid;
    return this.handshake;
  }

  // Sends packets (joined by the record separator).
  async post(...packets) {
    const r = await request(this.url(), { method: "POST", body: packets.join("\x1e") });
    return r;
  }

  // One GET; resolves with its packets.
  async get(timeoutMs = 5000) {
    const r = await request(this.url(), { timeoutMs });
    if (r.status !== 200) throw new Error(`GET answered ${r.status}: ${r.text}`);
    return r.text === "" ? [] : r.text.split("\x1e");
  }
}

// Parses a Socket.IO EVENT packet text ("42[...]" with the Engine.IO "4" prefix) of the main
// namespace into [event, ...args]; undefined for anything else.
export function parseEvent(m) {
  const x = /^42(\d*)(\[.*)$/s.exec(m);
  return x ? JSON.parse(x[2]) : undefined;
}
