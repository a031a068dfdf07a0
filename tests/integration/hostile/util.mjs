// Helpers for the hostile-input tests: raw TCP connections that speak HTTP/1.1 and
// RFC 6455 framing by hand (so that tests can send exactly the bytes they mean), a
// well-behaved Engine.IO session kept open across a test file, and /stats polling.
// The raw connection, parsers, frame builder and handshake are ../lib/raw.mjs; waits are
// ../lib/wait.mjs (both re-exported here).
//
// Every Conn made here is tracked; closeAllConns() destroys whatever a test left open.
import crypto from "node:crypto";
import assert from "node:assert/strict";
import { describe, it, before, after } from "node:test";
import { OP, RawConn, frame, wsConnect } from "../lib/raw.mjs";
import { startServer } from "../lib/server.mjs";
import { pollUntil, waitUntil } from "../lib/wait.mjs";
import { WsClient } from "../lib/ws.mjs";

export { OP, acceptFor, frame, handshakeRequest, parseFrame, parseResponse } from "../lib/raw.mjs";
export { sleep, waitUntil } from "../lib/wait.mjs";

export const EIO_PATH = "/engine.io/";
export const WS_PATH = "/engine.io/?EIO=4&transport=websocket";
export const POLL_PATH = "/engine.io/?EIO=4&transport=polling";

const live = new Set();

/* ------------------------------------------------------------------ raw connection */

// A RawConn (../lib/raw.mjs) whose waits default to 3 s, tracked until it closes.
export class Conn extends RawConn {
  static waitMs = 3000;

  constructor(port) {
    super(port);
    live.add(this);
    this.socket.on("close", () => live.delete(this));
  }
}

export function closeAllConns() {
  for (const c of live) c.destroy();
  live.clear();
}

/* ------------------------------------------------------------------ HTTP */

/** Builds a request. headers: array of [name, value] or object. Host is added unless given. */
export function buildRequest({ method = "GET", path = "/", version = "HTTP/1.1", headers = [], body, close = false } = {}) {
  const hs = Array.isArray(headers) ? [...headers] : Object.entries(headers);
  if (!hs.some(([n]) => n.toLowerCase() === "host")) hs.unshift(["Host", "127.0.0.1"]);
  const b = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(body, "utf8");
  if (b && !hs.some(([n]) => /^(content-length|transfer-encoding)$/i.test(n))) hs.push(["Content-Length", String(b.length)]);
  if (close) hs.push(["Connection", "close"]);
  const head = `${method} ${path} ${version}\r\n${hs.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`;
  return b ? Buffer.concat([Buffer.from(head, "latin1"), b]) : Buffer.from(head, "latin1");
}

/** One request on a fresh connection (Connection: close); returns the response. */
export async function request(port, opts, { timeoutMs = 3000 } = {}) {
  const c = await Conn.connect(port);
  try {
    c.write(buildRequest({ close: true, ...opts }));
    return await c.readResponse({ timeoutMs });
  } finally {
    c.destroy();
  }
}

/** Sends raw bytes on a fresh connection, expects an error response with `status`, a
 * "Connection: close" header, and the server closing the connection. Returns the response. */
export async function expectHttpError(port, raw, status, { timeoutMs = 3000, conn } = {}) {
  const c = conn ?? (await Conn.connect(port));
  try {
    if (raw !== undefined && raw !== null) c.write(raw);
    const res = await c.readResponse({ timeoutMs });
    const statuses = Array.isArray(status) ? status : [status];
    assert.ok(statuses.includes(res.status), `expected status ${statuses.join(" or ")}, got ${res.status} ${res.reason}`);
    assert.match(res.headers.connection ?? "", /close/i, `expected "Connection: close" on ${res.status}, headers ${JSON.stringify(res.headers)}`);
    await c.waitClosed({ timeoutMs });
    return res;
  } finally {
    c.destroy();
  }
}

export async function stats(port) {
  const res = await request(port, { path: "/stats" });
  assert.equal(res.status, 200, `/stats answered ${res.status}`);
  return JSON.parse(res.text);
}

/* ------------------------------------------------------------------ WebSocket frames */

export const text = (payload, o = {}) => frame({ opcode: OP.TEXT, payload, ...o });
export const binary = (payload, o = {}) => frame({ opcode: OP.BINARY, payload, ...o });
export const cont = (payload, o = {}) => frame({ opcode: OP.CONT, payload, ...o });
export const ping = (payload = "", o = {}) => frame({ opcode: OP.PING, payload, ...o });
export const pong = (payload = "", o = {}) => frame({ opcode: OP.PONG, payload, ...o });
export function closeFrame(code, reason = Buffer.alloc(0), o = {}) {
  let p;
  if (code === undefined || code === null) p = Buffer.alloc(0);
  else {
    const r = Buffer.isBuffer(reason) ? reason : Buffer.from(reason, "utf8");
    p = Buffer.alloc(2 + r.length);
    p.writeUInt16BE(code, 0);
    r.copy(p, 2);
  }
  return frame({ opcode: OP.CLOSE, payload: p, ...o });
}

/**
 * Opens a raw WebSocket Engine.IO session: handshake, 101 checks, the "0{...}" open
 * packet. `after` bytes are written in the same write as the handshake request.
 * Returns {conn, open, res}.
 */
export async function wsOpen(port, { path = WS_PATH, after } = {}) {
  const { conn, response: res } = await wsConnect(port, { path, after, Conn });
  const f = await conn.frameOrClose();
  assert.ok(f, "connection closed before the open packet");
  assert.equal(f.opcode, OP.TEXT, "open packet must be a text frame");
  assert.equal(f.fin, true);
  assert.equal(f.masked, false, "server frames must not be masked");
  assert.equal(f.text[0], "0", `first frame must be the open packet, got ${JSON.stringify(f.text)}`);
  const open = JSON.parse(f.text.slice(1));
  assert.equal(typeof open.sid, "string");
  return { conn, open, res };
}

/**
 * Reads frames until a close frame; asserts its code (a number, an array of acceptable
 * codes, or "any"), that nothing follows it, and that the server then closes the TCP
 * connection without the client replying. Returns {close, before}: the close frame and
 * the frames received before it.
 */
export async function expectWsClose(conn, code, { timeoutMs = 3000 } = {}) {
  const before = [];
  for (;;) {
    const f = await conn.frameOrClose({ timeoutMs });
    if (f === null) {
      if (code === "any-or-none") return { close: null, before };
      assert.fail(
        `server closed the TCP connection without a close frame (expected close code ${JSON.stringify(code)}); ` +
          `frames before: ${describeFrames(before)}; error ${conn.error?.code ?? "none"}`,
      );
    }
    assert.equal(f.masked, false, "server frames must not be masked");
    if (f.opcode !== OP.CLOSE) {
      before.push(f);
      continue;
    }
    if (code !== "any" && code !== "any-or-none") {
      const codes = Array.isArray(code) ? code : [code];
      assert.ok(
        codes.includes(f.code),
        `expected close code ${codes.join(" or ")}, got ${f.code} (reason ${JSON.stringify(f.reason)}); frames before: ${describeFrames(before)}`,
      );
    }
    await conn.waitClosed({ timeoutMs });
    assert.equal(conn.buf.length, 0, `server sent bytes after its close frame: ${conn.buf.toString("hex")}`);
    return { close: f, before };
  }
}

export function describeFrames(frames) {
  return JSON.stringify(frames.map((f) => ({ op: f.opcode, fin: f.fin, text: f.text.slice(0, 60), len: f.payload.length })));
}

/** Reads the next non-ping Engine.IO data frame (answers Engine.IO "2" pings with "3"). */
export async function readData(conn, { timeoutMs = 3000 } = {}) {
  for (;;) {
    const f = await conn.frameOrClose({ timeoutMs });
    assert.ok(f, "connection closed while waiting for a data frame");
    if (f.opcode === OP.TEXT && f.text === "2") {
      conn.write(text("3"));
      continue;
    }
    return f;
  }
}

/* ------------------------------------------------------------------ healthy session */

/** A well-behaved Engine.IO WebSocket client (../lib/ws.mjs) that answers pings. */
export class Healthy {
  static async open(srv) {
    const h = new Healthy();
    h.client = new WsClient(`${srv.wsUrl}${WS_PATH}`, { autoPong: true });
    const open = await h.next((m) => typeof m === "string" && m[0] === "0");
    h.sid = JSON.parse(open.slice(1)).sid;
    return h;
  }

  /** true once the server has closed the session */
  get closed() {
    return this.client.isClosed;
  }

  /** The first message for which pred holds (the others stay queued). */
  next(pred, timeoutMs = 3000) {
    return this.client.take(pred, timeoutMs, "an answer on the healthy session");
  }

  async echo() {
    const token = `4healthy-${crypto.randomBytes(6).toString("hex")}`;
    this.client.send(token);
    await this.next((m) => m === token);
  }

  close() {
    try {
      this.client.terminate();
    } catch {}
  }
}

/* ------------------------------------------------------------------ environment */

/**
 * Starts eio_echo with args, opens the healthy session, and records the baseline of
 * /stats (1 session; connections as counted with only the healthy session and the
 * stats request itself open). check() asserts the healthy session still echoes and
 * /stats returns to that baseline.
 */
export async function setup(args = []) {
  const srv = await startServer("eio_echo", args);
  const env = { srv, port: srv.port };
  env.healthy = await Healthy.open(srv);
  await env.healthy.echo();
  await waitUntil(async () => (await stats(srv.port)).sessions === 1, { timeoutMs: 5000, what: "1 session in /stats" });
  // The connection count must be stable: two equal readings in a row.
  let prev = -1;
  env.baseConnections = await waitUntil(
    async () => {
      const s = await stats(srv.port);
      const ok = s.connections === prev ? s.connections : undefined;
      prev = s.connections;
      return ok;
    },
    { timeoutMs: 5000, intervalMs: 50, what: "a stable connection count" },
  );
  env.check = async ({ timeoutMs = 6000 } = {}) => {
    assert.equal(env.healthy.closed, false, "the healthy session was closed");
    await env.healthy.echo();
    await pollUntil(() => stats(srv.port), (s) => s.sessions === 1 && s.connections === env.baseConnections, {
      timeoutMs,
      intervalMs: 50,
      what: "stats back to baseline",
      label: "last",
    }).catch((e) => assert.fail(`/stats did not return to baseline {sessions:1, connections:${env.baseConnections}}: ${e.message}`));
    await env.healthy.echo();
  };
  env.teardown = async () => {
    env.healthy?.close();
    closeAllConns();
    await srv.stop();
  };
  return env;
}

/**
 * The scaffolding every hostile test file shares: setup(args) before its tests, teardown
 * after them; set(env) hands the environment to the file. Returns group(name, fn): a
 * describe block of fn's tests that ends with one (test options T) checking that the
 * healthy session still echoes and /stats is back to baseline.
 */
export function hostileFile(args, set, T) {
  let env;
  before(async () => {
    env = await setup(args);
    set(env);
  });
  after(async () => {
    await env?.teardown();
  });
  return function group(name, fn) {
    describe(name, () => {
      fn();
      it("the healthy session still echoes and /stats is back to baseline", T, async () => {
        await env.check();
      });
    });
  };
}

/* ------------------------------------------------------------------ Engine.IO polling */

export async function pollOpen(port) {
  const res = await request(port, { path: POLL_PATH });
  assert.equal(res.status, 200, `polling handshake answered ${res.status}: ${res.text}`);
  assert.equal(res.text[0], "0", `polling handshake body ${JSON.stringify(res.text)}`);
  return JSON.parse(res.text.slice(1)).sid;
}

export const pollPath = (sid) => `${POLL_PATH}&sid=${encodeURIComponent(sid)}`;

export function pollPost(port, sid, body, opts = {}, ropts = {}) {
  return request(port, { method: "POST", path: pollPath(sid), body, headers: [["Content-Type", "text/plain;charset=UTF-8"]], ...opts }, ropts);
}

export function pollGet(port, sid, { timeoutMs = 3000 } = {}) {
  return request(port, { path: pollPath(sid) }, { timeoutMs });
}

/** Closes a polling session if it still exists (POST "1"); ignores a 400 for a gone sid. */
export async function pollClose(port, sid) {
  try {
    await pollPost(port, sid, "1");
  } catch {}
}
