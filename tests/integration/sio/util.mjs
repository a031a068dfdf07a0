// Helpers shared by the Socket.IO integration suites (tests/integration/sio/*.test.mjs).
//
// They drive tests/servers/sio_test_server.c (contract: ./README.md) with the official
// socket.io-client, plus a few raw Engine.IO clients (ws / plain HTTP) for what the official
// client cannot be made to do (never answer pings, send garbage, hold no GET).
// What is not specific to sio_test_server (HTTP requests, waits, socket.io-client helpers,
// the Recorder, the raw websocket client) lives in ../lib/ and is re-exported here.
import http from "node:http";
import { io } from "socket.io-client";
import { before, afterEach, after } from "node:test";
import { getJson, request } from "../lib/http.mjs";
import { startServer } from "../lib/server.mjs";
import { POLLING, Recorder, WS, connected } from "../lib/sio.mjs";
import { pollUntil } from "../lib/wait.mjs";
import { WsClient } from "../lib/ws.mjs";

export { request } from "../lib/http.mjs";
export { POLLING, Recorder, TRANSPORTS, WS, connectError, connected } from "../lib/sio.mjs";
export { once, sleep, waitUntil, withTimeout } from "../lib/wait.mjs";

export const SIO_PATH = "/socket.io/";

// The transports every suite runs over (WS, POLLING, TRANSPORTS: ../lib/sio.mjs). UPGRADE is
// the client's default: polling first, then an upgrade to websocket.
export const UPGRADE = { name: "polling+upgrade", opts: {} };
export const ALL_TRANSPORTS = [WS, POLLING, UPGRADE];

// Client options for transport tr, plus extra: O(extra).
export const optsFor = (tr) => (extra = {}) => ({ ...tr.opts, ...extra });

// PARLEY_TEST_WORKERS=N runs the suite against N worker processes (ctest registers the
// suites again as integration/sio-workers3/*): every client connection lands on any of them.
export const WORKERS = Number(process.env.PARLEY_TEST_WORKERS || 1);

export function startSio(args = [], opts) {
  const workers = WORKERS > 1 && !args.includes("--workers") ? ["--workers", String(WORKERS)] : [];
  return startServer("sio_test_server", [...args, ...workers], opts);
}

// Registers the hooks most suites share: one sio_test_server (started with args) for the
// describe block, stopped (and checked for a clean exit) at the end; unless idle is false,
// every client is closed and the server must be idle after each test. set(srv, clients)
// hands both to the suite.
export function sioServerHooks(set, args = [], { idle = true } = {}) {
  let srv;
  let clients;
  before(async () => {
    srv = await startSio(args);
    clients = new Clients(srv);
    set(srv, clients);
  });
  if (idle) {
    afterEach(async () => {
      clients.closeAll();
      await waitIdle(srv);
    });
  }
  after(async () => {
    clients?.closeAll();
    await srv?.stop();
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

// ---- /stats ----

// GET /stats → {clients, sockets, recoverySessions, recoveryPackets, connections, disconnects}.
export function stats(srv) {
  return getJson(`${srv.url}/stats`);
}

// Waits until pred(stats) holds; the error names the last stats seen.
export function waitStats(srv, pred, what = "stats condition", timeoutMs = 10000) {
  return pollUntil(() => stats(srv), pred, {
    timeoutMs,
    intervalMs: 30,
    what,
    label: "last /stats",
    show: (last) => JSON.stringify({ ...last, disconnects: last?.disconnects?.slice(-10) }),
  });
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

// A raw websocket Engine.IO session on the Socket.IO path (../lib/ws.mjs). Messages come out
// as strings / Buffers; nextNonPing() skips pings without answering them.
export class RawWs extends WsClient {
  constructor(srv, { autoPong = false } = {}) {
    super(`${srv.wsUrl}${SIO_PATH}?EIO=4&transport=websocket`, { autoPong });
  }

  async open() {
    this.handshake = await this.readOpen();
    return this.handshake;
  }

  nextNonPing(ms = 5000) {
    return super.nextNonPing(ms, { answer: false });
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
