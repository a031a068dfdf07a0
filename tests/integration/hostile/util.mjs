// Helpers for the hostile-input tests: raw TCP connections that speak HTTP/1.1 and
// RFC 6455 framing by hand (so that tests can send exactly the bytes they mean), a
// well-behaved Engine.IO session kept open across a test file, and /stats polling.
//
// Every Conn made here is tracked; closeAllConns() destroys whatever a test left open.
import net from "node:net";
import crypto from "node:crypto";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startServer, waitUntil, sleep } from "../lib/server.mjs";

export { waitUntil, sleep };

export const EIO_PATH = "/engine.io/";
export const WS_PATH = "/engine.io/?EIO=4&transport=websocket";
export const POLL_PATH = "/engine.io/?EIO=4&transport=polling";
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const live = new Set();

/* ------------------------------------------------------------------ raw connection */

export class Conn {
  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.ended = false; // the server sent FIN (or the socket closed)
    this.closed = false; // the socket is fully closed
    this.error = null; // e.g. ECONNRESET
    this.closedAt = null;
    this.waiters = new Set();
    socket.on("data", (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on("end", () => {
      this.ended = true;
      this.closedAt ??= Date.now();
      this.wake();
    });
    socket.on("error", (e) => {
      this.error = e;
      this.wake();
    });
    socket.on("close", () => {
      this.ended = true;
      this.closed = true;
      this.closedAt ??= Date.now();
      live.delete(this);
      this.wake();
    });
    live.add(this);
  }

  static connect(port, { timeoutMs = 3000 } = {}) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: "127.0.0.1", port });
      s.setNoDelay(true);
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error("connect timed out"));
      }, timeoutMs);
      s.once("connect", () => {
        clearTimeout(t);
        resolve(new Conn(s));
      });
      s.once("error", (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  /** true when the connection has ended from the server side (FIN, RST or close) */
  get gone() {
    return this.ended || this.closed || this.error !== null;
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  write(data) {
    if (this.socket.destroyed || this.socket.writableEnded) return false;
    return this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  /** Writes chunks one after the other with delayMs between them; stops if the server goes. */
  async writeSlowly(chunks, delayMs) {
    for (const c of chunks) {
      if (this.gone) return false;
      this.write(c);
      await sleep(delayMs);
    }
    return true;
  }

  /** Re-evaluates pred() on every event until it returns something other than undefined. */
  waitFor(pred, { timeoutMs = 3000, what = "data" } = {}) {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        let v;
        try {
          v = pred();
        } catch (e) {
          done();
          reject(e);
          return;
        }
        if (v !== undefined) {
          done();
          resolve(v);
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${what}; ` +
              `received so far: ${JSON.stringify(this.buf.toString("latin1").slice(0, 300))}` +
              `${this.gone ? " (connection gone)" : ""}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Reads one complete HTTP response (and consumes it). */
  readResponse({ timeoutMs = 3000 } = {}) {
    return this.waitFor(
      () => {
        const r = parseResponse(this.buf, this.gone);
        if (r) {
          this.buf = this.buf.subarray(r.used);
          return r.response;
        }
        if (this.gone) throw new Error(`connection closed before a complete response; got ${JSON.stringify(this.buf.toString("latin1").slice(0, 300))}`);
        return undefined;
      },
      { timeoutMs, what: "an HTTP response" },
    );
  }

  /** Resolves when the server has closed the connection; rejects on timeout. */
  waitClosed({ timeoutMs = 3000 } = {}) {
    return this.waitFor(() => (this.gone ? true : undefined), {
      timeoutMs,
      what: "the server to close the connection",
    });
  }

  /** Resolves true if the server closes within timeoutMs, false otherwise (never rejects). */
  async closesWithin(timeoutMs) {
    try {
      await this.waitClosed({ timeoutMs });
      return true;
    } catch {
      return false;
    }
  }

  /** Reads one WebSocket frame sent by the server (and consumes it). */
  readFrame({ timeoutMs = 3000 } = {}) {
    return this.waitFor(
      () => {
        const r = parseFrame(this.buf);
        if (r) {
          this.buf = this.buf.subarray(r.used);
          return r.frame;
        }
        if (this.gone) return null; // no more frames will come
        return undefined;
      },
      { timeoutMs, what: "a WebSocket frame" },
    );
  }

  destroy() {
    this.socket.destroy();
  }
}

export function closeAllConns() {
  for (const c of live) c.destroy();
  live.clear();
}

/* ------------------------------------------------------------------ HTTP */

/** Parses one HTTP/1.x response from buf. Returns {response, used} or null if incomplete. */
export function parseResponse(buf, ended = false) {
  const headEnd = buf.indexOf("\r\n\r\n");
  if (headEnd < 0) return null;
  const head = buf.subarray(0, headEnd).toString("latin1");
  const lines = head.split("\r\n");
  const m = /^HTTP\/(1\.[01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) throw new Error(`bad status line from server: ${JSON.stringify(lines[0])}`);
  const status = Number(m[2]);
  const headers = {};
  const rawHeaders = [];
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":");
    if (i <= 0) throw new Error(`bad header line from server: ${JSON.stringify(line)}`);
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    rawHeaders.push([name, value]);
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  let off = headEnd + 4;
  let body;
  if (status === 101 || status === 204 || status === 304 || (status >= 100 && status < 200)) {
    body = Buffer.alloc(0);
  } else if (/chunked/i.test(headers["transfer-encoding"] || "")) {
    const parts = [];
    for (;;) {
      const le = buf.indexOf("\r\n", off);
      if (le < 0) return null;
      const size = parseInt(buf.subarray(off, le).toString("latin1").split(";")[0], 16);
      if (Number.isNaN(size)) throw new Error("bad chunk size from server");
      off = le + 2;
      if (size === 0) {
        // trailers until an empty line
        for (;;) {
          const te = buf.indexOf("\r\n", off);
          if (te < 0) return null;
          const empty = te === off;
          off = te + 2;
          if (empty) break;
        }
        break;
      }
      if (buf.length < off + size + 2) return null;
      parts.push(buf.subarray(off, off + size));
      off += size + 2;
    }
    body = Buffer.concat(parts);
  } else if (headers["content-length"] !== undefined) {
    const n = Number(headers["content-length"]);
    if (buf.length < off + n) return null;
    body = buf.subarray(off, off + n);
    off += n;
  } else {
    if (!ended) return null; // body delimited by close
    body = buf.subarray(off);
    off = buf.length;
  }
  return {
    response: { status, reason: m[3] ?? "", version: m[1], headers, rawHeaders, body, text: body.toString("utf8") },
    used: off,
  };
}

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

/**
 * Builds a client frame. opts:
 *   fin (true), rsv (0..7), opcode, payload (Buffer|string), mask (true), key (Buffer(4)),
 *   lenMode ("auto" | 7 | 16 | 64), declaredLen (override the length field; the payload
 *   bytes given are still appended as is), topBit (set the 64-bit length's top bit).
 */
export function frame({ fin = true, rsv = 0, opcode, payload = Buffer.alloc(0), mask = true, key, lenMode = "auto", declaredLen, topBit = false } = {}) {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, "utf8");
  const len = declaredLen ?? p.length;
  let mode = lenMode;
  if (mode === "auto") mode = len < 126 ? 7 : len < 65536 ? 16 : 64;
  const parts = [];
  const b0 = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  const m = mask ? 0x80 : 0;
  if (mode === 7) {
    parts.push(Buffer.from([b0, m | len]));
  } else if (mode === 16) {
    const h = Buffer.alloc(4);
    h[0] = b0;
    h[1] = m | 126;
    h.writeUInt16BE(len, 2);
    parts.push(h);
  } else {
    const h = Buffer.alloc(10);
    h[0] = b0;
    h[1] = m | 127;
    h.writeBigUInt64BE(BigInt(len) | (topBit ? 1n << 63n : 0n), 2);
    parts.push(h);
  }
  if (mask) {
    const k = key ?? crypto.randomBytes(4);
    parts.push(k);
    const out = Buffer.alloc(p.length);
    for (let i = 0; i < p.length; i++) out[i] = p[i] ^ k[i & 3];
    parts.push(out);
  } else {
    parts.push(p);
  }
  return Buffer.concat(parts);
}

export const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 };

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

/** Parses one server frame from buf. Returns {frame, used} or null. */
export function parseFrame(buf) {
  if (buf.length < 2) return null;
  const b0 = buf[0];
  const b1 = buf[1];
  let len = b1 & 0x7f;
  let off = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    off = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    off = 10;
  }
  const masked = (b1 & 0x80) !== 0;
  let key = null;
  if (masked) {
    if (buf.length < off + 4) return null;
    key = buf.subarray(off, off + 4);
    off += 4;
  }
  if (buf.length < off + len) return null;
  let payload = Buffer.from(buf.subarray(off, off + len));
  if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
  const f = {
    fin: (b0 & 0x80) !== 0,
    rsv: (b0 >> 4) & 7,
    opcode: b0 & 0x0f,
    masked,
    payload,
    text: payload.toString("utf8"),
  };
  if (f.opcode === OP.CLOSE) {
    f.code = payload.length >= 2 ? payload.readUInt16BE(0) : null;
    f.reason = payload.length > 2 ? payload.subarray(2).toString("utf8") : "";
  }
  return { frame: f, used: off + len };
}

export function handshakeRequest({ path = WS_PATH, key = crypto.randomBytes(16).toString("base64"), version = "13", method = "GET", httpVersion = "HTTP/1.1", extra = [], omit = [] } = {}) {
  const hs = [
    ["Host", "127.0.0.1"],
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Key", key],
    ["Sec-WebSocket-Version", version],
    ...extra,
  ].filter(([n, v]) => v !== null && v !== undefined && !omit.map((o) => o.toLowerCase()).includes(n.toLowerCase()));
  return { raw: Buffer.from(`${method} ${path} ${httpVersion}\r\n${hs.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`, "latin1"), key };
}

export function acceptFor(key) {
  return crypto.createHash("sha1").update(key + WS_GUID).digest("base64");
}

/**
 * Opens a raw WebSocket Engine.IO session: handshake, 101 checks, the "0{...}" open
 * packet. `after` bytes are written in the same write as the handshake request.
 * Returns {conn, open, res}.
 */
export async function wsOpen(port, { path = WS_PATH, after } = {}) {
  const conn = await Conn.connect(port);
  const { raw, key } = handshakeRequest({ path });
  conn.write(after ? Buffer.concat([raw, after]) : raw);
  const res = await conn.readResponse();
  assert.equal(res.status, 101, `expected 101, got ${res.status} ${res.text}`);
  assert.equal(res.headers["sec-websocket-accept"], acceptFor(key), "Sec-WebSocket-Accept");
  const f = await conn.readFrame();
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
    const f = await conn.readFrame({ timeoutMs });
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
    const f = await conn.readFrame({ timeoutMs });
    assert.ok(f, "connection closed while waiting for a data frame");
    if (f.opcode === OP.TEXT && f.text === "2") {
      conn.write(text("3"));
      continue;
    }
    return f;
  }
}

/* ------------------------------------------------------------------ healthy session */

/** A well-behaved Engine.IO WebSocket client (the `ws` package) that answers pings. */
export class Healthy {
  static async open(srv) {
    const h = new Healthy();
    h.ws = new WebSocket(`${srv.wsUrl}${WS_PATH}`);
    h.messages = [];
    h.waiters = new Set();
    h.closed = false;
    h.ws.on("message", (data, isBinary) => {
      const s = isBinary ? data : data.toString();
      if (s === "2") {
        h.ws.send("3");
        return;
      }
      h.messages.push(s);
      for (const w of [...h.waiters]) w();
    });
    h.ws.on("close", () => {
      h.closed = true;
      for (const w of [...h.waiters]) w();
    });
    h.ws.on("error", () => {});
    const open = await h.next((m) => typeof m === "string" && m[0] === "0");
    h.sid = JSON.parse(open.slice(1)).sid;
    return h;
  }

  next(pred, timeoutMs = 3000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.messages.findIndex(pred);
        if (i >= 0) {
          const [m] = this.messages.splice(i, 1);
          done();
          resolve(m);
        } else if (this.closed) {
          done();
          reject(new Error("the healthy session was closed by the server"));
        }
      };
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(check);
      };
      const t = setTimeout(() => {
        done();
        reject(new Error("the healthy session did not answer in time"));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  async echo() {
    const token = `4healthy-${crypto.randomBytes(6).toString("hex")}`;
    this.ws.send(token);
    await this.next((m) => m === token);
  }

  close() {
    try {
      this.ws.terminate();
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
    let last;
    try {
      await waitUntil(
        async () => {
          last = await stats(srv.port);
          return last.sessions === 1 && last.connections === env.baseConnections;
        },
        { timeoutMs, intervalMs: 50, what: "stats back to baseline" },
      );
    } catch {
      assert.fail(`/stats did not return to baseline {sessions:1, connections:${env.baseConnections}}; last ${JSON.stringify(last)}`);
    }
    await env.healthy.echo();
  };
  env.teardown = async () => {
    env.healthy?.close();
    closeAllConns();
    await srv.stop();
  };
  return env;
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
