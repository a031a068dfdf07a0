// Helpers shared by the chat service suites (tests/integration/chat/*.test.mjs).
//
// They drive the `parley` server (src/main/) against its contract, docs/CHAT-API.md, with
// the official socket.io-client. Tokens come from the development login or are signed here
// (HS256 with node:crypto) against the --jwt-secret the server was started with.
// What is not chat-specific (HTTP requests, waits, socket.io-client helpers, the Recorder)
// lives in ../lib/ and is re-exported here for the tests.
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { request } from "../lib/http.mjs";
import { processExit, startServer } from "../lib/server.mjs";
import { Recorder, WS, connected, connectError } from "../lib/sio.mjs";
import { withTimeout } from "../lib/wait.mjs";

export { request } from "../lib/http.mjs";
export { processExit } from "../lib/server.mjs";
export { POLLING, TRANSPORTS, WS, connectError, connected } from "../lib/sio.mjs";
export { sleep, waitUntil, withTimeout } from "../lib/wait.mjs";

export const SECRET = "chat-integration-secret-0123456789";

// ---- servers ----

// A fresh temporary directory (removed by rmTemp).
export function tempDir(tag = "chat") {
  return fs.mkdtempSync(path.join(os.tmpdir(), `parley-${tag}-`));
}

export function rmTemp(dir) {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

// Starts parley with a known secret and the development login. Unless the caller passes
// its own --store/--data-dir, history goes to SQLite in a temporary directory (never to
// ./data). Returns the harness's server object plus .dataDir and .cleanup().
export async function startParley(args = [], { dataDir, env, secret = SECRET, devLogin = true } = {}) {
  const own = !dataDir && !args.includes("--data-dir") && !args.includes("memory");
  const dir = dataDir ?? (own ? tempDir() : undefined);
  // PARLEY_TEST_WORKERS=N runs every suite against N worker processes (ctest registers
  // the chat suites a second time that way).
  const workers = process.env.PARLEY_TEST_WORKERS && !args.includes("--workers") ? ["--workers", process.env.PARLEY_TEST_WORKERS] : [];
  const full = [
    ...workers,
    "--jwt-secret",
    secret,
    ...(devLogin ? ["--dev-login"] : []),
    ...(dir && !args.includes("--data-dir") ? ["--data-dir", dir] : []),
    ...args,
  ];
  let srv;
  try {
    srv = await startServer("parley", full, { env: env ?? {} });
  } catch (e) {
    if (own) rmTemp(dir);
    throw e;
  }
  srv.dataDir = dir;
  srv.cleanup = () => {
    if (own) rmTemp(dir);
  };
  return srv;
}

// ---- tokens ----

const b64url = (x) => Buffer.from(x).toString("base64url");

// A JWT with the given header (HS256 by default), signed with HMAC-<hash> over secret;
// hash: null leaves the signature empty (as alg none does).
export function signToken(claims, { secret = SECRET, header = { alg: "HS256", typ: "JWT" }, hash = "sha256" } = {}) {
  const h = b64url(JSON.stringify(header));
  const p = b64url(JSON.stringify(claims));
  const sig = hash ? crypto.createHmac(hash, secret).update(`${h}.${p}`).digest("base64url") : "";
  return `${h}.${p}.${sig}`;
}

export const nowS = () => Math.floor(Date.now() / 1000);

let userCounter = 0;
// A token for a new user id, valid for an hour. Returns {token, userId, name}.
export function newUser(name, extra = {}) {
  const userId = `u${process.pid}-${++userCounter}-${crypto.randomBytes(3).toString("hex")}`;
  const n = name ?? `User ${userCounter}`;
  const token = signToken({ sub: userId, name: n, iat: nowS(), exp: nowS() + 3600, ...extra });
  return { token, userId, name: n };
}

// ---- HTTP ----

// POST /api/dev/token {name} → {token, userId}.
export async function devToken(srv, name) {
  const r = await request(`${srv.url}/api/dev/token`, {
    method: "POST",
    body: JSON.stringify({ name }),
    headers: { "content-type": "application/json" },
  });
  if (r.status !== 200) throw new Error(`/api/dev/token answered ${r.status}: ${r.text}`);
  return JSON.parse(r.text);
}

// GET /healthz → {status, clients, sockets} (undefined when the route is absent).
export async function health(srv) {
  const r = await request(`${srv.url}/healthz`);
  return r.status === 200 ? JSON.parse(r.text) : undefined;
}

// ---- clients ----

// One chat connection: socket + recorder + helpers.
export class Client {
  constructor(socket, user) {
    this.s = socket;
    this.rec = new Recorder(socket, { pick: (args) => args[0] }); // of()/next(): first arguments
    this.user = user; // {token, userId, name}
  }

  get userId() {
    return this.user?.userId;
  }

  // emitWithAck, bounded: resolves with the ack's first argument.
  ask(ev, payload, ms = 5000) {
    return this.s.timeout(ms).emitWithAck(ev, payload);
  }

  // joinRoom, asserting success; returns {ack, history} (history: messageHistory's argument).
  async join(roomId) {
    const k = this.rec.count("messageHistory");
    const ack = await this.ask("joinRoom", { roomId });
    if (!ack || ack.ok !== true) throw new Error(`joinRoom ${roomId} failed: ${JSON.stringify(ack)}`);
    this.joined = roomId;
    await this.rec.waitCount("messageHistory", k + 1);
    this.rec.cursor.set("messageHistory", k + 1);
    return { ack, history: this.rec.of("messageHistory")[k] };
  }

  // sendMessage, asserting success; returns the ack.
  async send(roomId, text) {
    const ack = await this.ask("sendMessage", { roomId, text });
    if (!ack || ack.ok !== true) throw new Error(`sendMessage failed: ${JSON.stringify(ack)}`);
    return ack;
  }

  // A round trip on this connection: once its ack is back, every event the server queued
  // for this connection before handling it has been received (packets on one connection
  // arrive in the order the server sent them). It asks for one message of the last room
  // joined: with workers that request goes through the store owner, whose stored messages
  // and presence news reach this connection's worker before its answer does (one FIFO
  // pipe), so the round trip also covers what other workers' clients caused. Without a
  // room, `history` of a room never joined is answered (not_in_room) and has no effect.
  async flush() {
    if (this.joined && this.s.connected) await this.ask("history", { roomId: this.joined, limit: 1 });
    else await this.ask("history", { roomId: "zz-flush-never-joined" });
  }

  close() {
    this.s.disconnect();
    this.s.io._close?.();
  }
}

export class Clients {
  constructor(srv, transport = WS) {
    this.srv = srv;
    this.transport = transport;
    this.all = new Set();
  }

  // A socket (not awaited) with auth {token} (auth: undefined → no auth object at all).
  open(auth, opts = {}) {
    const s = io(this.srv.url, {
      forceNew: true,
      reconnection: false,
      timeout: 5000,
      ...this.transport.opts,
      ...(auth === undefined ? {} : { auth }),
      ...opts,
    });
    return s;
  }

  // Connects a client for user (a {token,...} or a new user when omitted).
  async connect(user, opts = {}) {
    const u = user ?? newUser();
    const s = this.open({ token: u.token }, opts);
    const c = new Client(s, u);
    this.all.add(c);
    await connected(s);
    return c;
  }

  // Tries to connect with the given auth; resolves with the connect_error (rejects when
  // it connects).
  async refused(auth, opts = {}) {
    const s = this.open(auth, opts);
    const c = new Client(s, undefined);
    this.all.add(c);
    try {
      return await connectError(s);
    } finally {
      c.close();
      this.all.delete(c);
    }
  }

  closeOne(c) {
    c.close();
    this.all.delete(c);
  }

  closeAll() {
    for (const c of this.all) c.s.disconnect();
    for (const c of this.all) c.s.io._close?.();
    this.all.clear();
  }
}

// ---- messages ----

export const MESSAGE_FIELDS = ["id", "roomId", "seq", "text", "timestamp", "userId", "username"];

export const keysOf = (o) => Object.keys(o).sort();

let roomCounter = 0;
export function newRoom(tag = "room") {
  return `${tag}-${process.pid}-${++roomCounter}-${crypto.randomBytes(3).toString("hex")}`;
}

// Every message of a room through `history`, oldest first, paging backwards by beforeSeq
// with the largest page (100).
export async function fullHistory(c, roomId) {
  let before;
  const pages = [];
  for (let i = 0; i < 100000; i++) {
    const ack = await c.ask("history", before === undefined ? { roomId, limit: 100 } : { roomId, beforeSeq: before, limit: 100 });
    if (!ack || ack.ok !== true) throw new Error(`history failed: ${JSON.stringify(ack)}`);
    if (ack.messages.length === 0) break;
    if (before !== undefined && ack.messages.at(-1).seq >= before) {
      throw new Error(`history beforeSeq ${before} answered seq ${ack.messages.at(-1).seq}`);
    }
    pages.unshift(ack.messages);
    before = ack.messages[0].seq;
    if (before <= 1) break;
  }
  return pages.flat();
}

// Whether srv's process has died (crashed) — checked with a request, so that a crash
// during the last test is seen even when its exit has not been reported yet. Returns a
// description (exit and the end of its log), or undefined while it is alive.
export async function deathOf(srv) {
  const dead = () => srv.process.exitCode !== null || srv.process.signalCode !== null;
  if (!dead()) {
    try {
      await request(`${srv.url}/`, { timeoutMs: 3000 });
      return undefined;
    } catch {
      await withTimeout(processExit(srv.process), 3000, "the exit").catch(() => {});
    }
  }
  if (!dead()) return undefined;
  return `parley died (${srv.process.signalCode ?? srv.process.exitCode}):\n${srv.stderr().slice(-6000)}`;
}

// Server lifecycle for a describe() block: before → start, afterEach → close the clients
// and, if the server died during the test, fail that test and start a fresh server for the
// next ones; after → stop (a clean exit is checked) and remove its data.
export function serverPerSuite(hooks, start, transport = WS) {
  const box = { srv: undefined, clients: undefined };
  const boot = async () => {
    box.srv = await start();
    box.clients = new Clients(box.srv, transport);
  };
  hooks.before(boot);
  hooks.afterEach(async () => {
    box.clients?.closeAll();
    if (!box.srv) return;
    const death = await deathOf(box.srv);
    if (death) {
      console.error(death.slice(-3000));
      box.srv.cleanup();
      box.srv = undefined;
      await boot();
      throw new Error(`${death}\n(a fresh server was started for the next tests)`);
    }
  });
  hooks.after(async () => {
    box.clients?.closeAll();
    const srv = box.srv;
    if (!srv) return;
    try {
      await srv.stop();
    } finally {
      srv.cleanup();
    }
  });
  return box;
}
