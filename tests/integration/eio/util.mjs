// Small helpers shared by the Engine.IO integration tests (tests/integration/eio/*.test.mjs).
//
// Everything here talks to the server with a fresh TCP connection per HTTP request
// (agent: false, "Connection: close"), so that the server's /stats "connections" count is not
// inflated by idle keep-alive sockets pooled on the client side.
import crypto from "node:crypto";
import http from "node:http";
import net from "node:net";
import { test, describe, before, after } from "node:test";
import { WebSocket } from "ws";
import { startServer, waitUntil } from "../lib/server.mjs";

export const EIO_PATH = "/engine.io/";
export const SEP = "\x1e";

// Starts eio_echo with the given extra arguments.
export function startEcho(args = [], opts) {
  return startServer("eio_echo", args, opts);
}

// A bounded wait on a promise: rejects with `what` (a string, or a function giving one) if it
// does not settle within ms.
export function withTimeout(promise, ms, what = "operation") {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const w = typeof what === "function" ? what() : what;
      reject(new Error(`timed out after ${ms} ms waiting for ${w}`));
    }, ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// One HTTP request on its own connection. Resolves to
//   { status, headers, body: Buffer, text: string, json() }
// or rejects on a transport error (reset, refused, timeout).
// opts: method, body (string|Buffer), headers, timeoutMs, chunked (send body with
// Transfer-Encoding: chunked, in pieces of `chunked` bytes), onRequest(req) (called with the
// ClientRequest, e.g. to destroy it later).
export function request(url, opts = {}) {
  const { method = "GET", body, headers = {}, timeoutMs = 10000, chunked = 0, onRequest } = opts;
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined && !chunked) h["content-length"] = Buffer.byteLength(body);
    const req = http.request(url, { method, headers: h, agent: false });
    const timer = setTimeout(() => {
      req.destroy(new Error(`HTTP ${method} ${url} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      res.on("end", () => {
        clearTimeout(timer);
        const buf = Buffer.concat(chunks);
        const text = buf.toString("utf8");
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: buf,
          text,
          json: () => JSON.parse(text),
        });
      });
    });
    if (onRequest) onRequest(req);
    if (body !== undefined && chunked) {
      const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
      let off = 0;
      const pump = () => {
        while (off < b.length) {
          const piece = b.subarray(off, off + chunked);
          off += piece.length;
          if (!req.write(piece)) {
            req.once("drain", pump);
            return;
          }
        }
        req.end();
      };
      pump();
    } else {
      req.end(body);
    }
  });
}

// Aborts a TCP connection with a RST (SO_LINGER 0) where that is safe; returns false when the
// socket was already gone. Node 20's resetAndDestroy() on a socket whose write side is already
// ending (a pending shutdown, e.g. after the server closed a Connection: close exchange) fails
// with EINVAL and leaves the handle open forever, which makes the process spin at exit; such
// sockets are destroyed plainly instead.
export function rst(sock) {
  if (!sock || sock.destroyed) return false;
  if (sock.connecting || sock.writableEnded || sock._writableState?.ending || sock.readableEnded) sock.destroy();
  else sock.resetAndDestroy();
  return true;
}

// URL of the Engine.IO endpoint of srv with the given query parameters (in order).
export function eioUrl(srv, query = {}, { ws = false, path = EIO_PATH } = {}) {
  const base = ws ? srv.wsUrl : srv.url;
  const qs = new URLSearchParams(query).toString();
  return `${base}${path}${qs ? `?${qs}` : ""}`;
}

export function pollUrl(srv, sid, extra = {}) {
  const q = { EIO: "4", transport: "polling" };
  if (sid !== undefined) q.sid = sid;
  return eioUrl(srv, { ...q, ...extra });
}

export function wsUrl(srv, sid) {
  const q = { EIO: "4", transport: "websocket" };
  if (sid !== undefined) q.sid = sid;
  return eioUrl(srv, q, { ws: true });
}

// GET /stats → { sessions, connections }.
export async function getStats(srv) {
  const r = await request(`${srv.url}/stats`, { timeoutMs: 5000 });
  if (r.status !== 200) throw new Error(`/stats answered ${r.status}: ${r.text}`);
  return r.json();
}

// Waits until the server reports no open sessions and at most `maxConnections` TCP connections
// (the /stats request itself counts as one).
export async function waitIdle(srv, { timeoutMs = 10000, maxConnections = 1 } = {}) {
  let last;
  try {
    await waitUntil(
      async () => {
        last = await getStats(srv);
        return last.sessions === 0 && last.connections <= maxConnections;
      },
      { timeoutMs, intervalMs: 50, what: "sessions 0" },
    );
  } catch (e) {
    throw new Error(`${e.message}; last /stats: ${JSON.stringify(last)}`);
  }
  return last;
}

// Opens a polling session; returns { sid, open, response }.
export async function pollingHandshake(srv, extra = {}) {
  const r = await request(pollUrl(srv, undefined, extra));
  if (r.status !== 200) throw new Error(`handshake answered ${r.status}: ${r.text}`);
  if (!r.text.startsWith("0")) throw new Error(`handshake body is not an open packet: ${r.text}`);
  const open = JSON.parse(r.text.slice(1));
  return { sid: open.sid, open, response: r };
}

// Splits a polling payload into packets.
export function splitPayload(text) {
  return text === "" ? [] : text.split(SEP);
}

// Payload packets minus heartbeat pings ("2"), which the 300 ms ping interval of the protocol
// tests may slip into any long-poll answer.
export function withoutPings(text) {
  return splitPayload(text).filter((p) => p !== "2");
}

// Parses a JSON error body {code, message}; throws with context when it is not one.
export function errorBody(r) {
  let v;
  try {
    v = JSON.parse(r.text);
  } catch {
    throw new Error(`error body is not JSON (status ${r.status}): ${JSON.stringify(r.text)}`);
  }
  return v;
}

// A raw `ws` WebSocket with an awaitable message queue.
//   const c = new WsClient(url); await c.opened; const m = await c.next();
// Text frames come out as strings, binary frames as Buffers. With autoPong, "2" pings are
// answered with "3" and not queued.
export class WsClient {
  constructor(url, { autoPong = false, headers } = {}) {
    this.url = url;
    this.autoPong = autoPong;
    this.queue = [];
    this.waiters = [];
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
      const w = this.waiters.shift();
      if (w) w.resolve(m);
      else this.queue.push(m);
    });
    this.closed = new Promise((resolve) => {
      this.ws.once("close", (code, reason) => {
        this.isClosed = true;
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.splice(0)) w.reject(new Error(`websocket closed (${code}) while waiting for a message`));
        resolve(this.closeInfo);
      });
    });
  }

  // Next queued message, waiting up to timeoutMs.
  next(timeoutMs = 5000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.isClosed) return Promise.reject(new Error("websocket closed while waiting for a message"));
    let entry;
    const p = new Promise((resolve, reject) => {
      entry = { resolve, reject };
      this.waiters.push(entry);
    });
    return withTimeout(p, timeoutMs, "a websocket message").catch((e) => {
      const i = this.waiters.indexOf(entry);
      if (i >= 0) this.waiters.splice(i, 1);
      throw e;
    });
  }

  // Next message that is not a heartbeat ping (pings get answered).
  async nextNonPing(timeoutMs = 5000) {
    for (;;) {
      const m = await this.next(timeoutMs);
      if (m === "2") {
        this.send("3");
        continue;
      }
      return m;
    }
  }

  send(data) {
    this.ws.send(data);
  }

  // Waits for the close event (bounded).
  waitClosed(timeoutMs = 5000) {
    return withTimeout(this.closed, timeoutMs, "the websocket to close");
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

// Opens a raw websocket session (transport=websocket, no sid) and returns the client plus the
// parsed open packet.
export async function wsHandshake(srv, { autoPong = false } = {}) {
  const c = new WsClient(wsUrl(srv), { autoPong });
  await withTimeout(c.opened, 5000, "websocket open");
  const first = await c.next();
  if (typeof first !== "string" || !first.startsWith("0")) {
    c.terminate();
    throw new Error(`first websocket message is not an open packet: ${JSON.stringify(first)}`);
  }
  return { client: c, open: JSON.parse(first.slice(1)) };
}

// Runs fn(i) for i in [0, n) with at most `concurrency` in flight. With rampMs, worker w starts
// w * rampMs later, so that the first wave is spread out too.
export async function pool(n, concurrency, fn, { rampMs = 0 } = {}) {
  let next = 0;
  const workers = [];
  for (let w = 0; w < Math.min(concurrency, n); w++) {
    workers.push(
      (async () => {
        if (rampMs) await new Promise((r) => setTimeout(r, w * rampMs));
        for (;;) {
          const i = next++;
          if (i >= n) return;
          await fn(i);
        }
      })(),
    );
  }
  await Promise.all(workers);
}

// ---------------------------------------------------------------------------------------------
// Raw TCP, for byte-level HTTP and WebSocket tests.

// Parses one complete HTTP/1.1 response at the start of buf. Returns
// { status, headers (lower-cased names; repeated ones joined with ", "), body, consumed } or
// undefined when incomplete. A response without Content-Length or chunked coding (other than
// 1xx/204/304) is complete only once the connection is closed (closed = true).
export function parseResponse(buf, closed = false) {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const head = buf.subarray(0, end).toString("latin1").split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
  if (!m) throw new Error(`bad status line ${JSON.stringify(head[0])}`);
  const status = Number(m[1]);
  const headers = {};
  for (const line of head.slice(1)) {
    const i = line.indexOf(":");
    const k = line.slice(0, i).trim().toLowerCase();
    const v = line.slice(i + 1).trim();
    headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
  }
  let pos = end + 4;
  if ((status >= 100 && status < 200) || status === 204 || status === 304) {
    return { status, headers, body: Buffer.alloc(0), consumed: pos };
  }
  if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
    const parts = [];
    for (;;) {
      const le = buf.indexOf("\r\n", pos);
      if (le < 0) return undefined;
      const size = parseInt(buf.subarray(pos, le).toString("latin1"), 16);
      if (buf.length < le + 2 + size + 2) return undefined;
      if (size === 0) {
        // no trailers expected
        return { status, headers, body: Buffer.concat(parts), consumed: le + 4 };
      }
      parts.push(buf.subarray(le + 2, le + 2 + size));
      pos = le + 2 + size + 2;
    }
  }
  if (headers["content-length"] !== undefined) {
    const n = Number(headers["content-length"]);
    if (buf.length < pos + n) return undefined;
    return { status, headers, body: buf.subarray(pos, pos + n), consumed: pos + n };
  }
  if (!closed) return undefined;
  return { status, headers, body: buf.subarray(pos), consumed: buf.length };
}

// Parses one server→client WebSocket frame at the start of buf (unmasked), or undefined.
export function parseFrame(buf) {
  if (buf.length < 2) return undefined;
  const fin = (buf[0] & 0x80) !== 0;
  const rsv = (buf[0] >> 4) & 7;
  const opcode = buf[0] & 0x0f;
  const masked = (buf[1] & 0x80) !== 0;
  let len = buf[1] & 0x7f;
  let pos = 2;
  if (len === 126) {
    if (buf.length < 4) return undefined;
    len = buf.readUInt16BE(2);
    pos = 4;
  } else if (len === 127) {
    if (buf.length < 10) return undefined;
    len = Number(buf.readBigUInt64BE(2));
    pos = 10;
  }
  let key = null;
  if (masked) {
    if (buf.length < pos + 4) return undefined;
    key = buf.subarray(pos, pos + 4);
    pos += 4;
  }
  if (buf.length < pos + len) return undefined;
  const payload = Buffer.from(buf.subarray(pos, pos + len));
  if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
  return { fin, rsv, opcode, masked, payload, consumed: pos + len };
}

// Builds a client→server WebSocket frame. len overrides the declared payload length.
export function wsFrame(opcode, payload = Buffer.alloc(0), { fin = true, rsv = 0, mask = true, len } = {}) {
  const p = Buffer.from(payload);
  const L = len ?? p.length;
  let head;
  if (L < 126) {
    head = Buffer.alloc(2);
    head[1] = L;
  } else if (L < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(L, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(L), 2);
  }
  head[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  if (!mask) return Buffer.concat([head, p]);
  head[1] |= 0x80;
  const key = crypto.randomBytes(4);
  for (let i = 0; i < p.length; i++) p[i] ^= key[i & 3];
  return Buffer.concat([head, key, p]);
}

// A raw TCP connection to the server with an awaitable receive buffer.
export class RawConn {
  constructor(port) {
    this.buf = Buffer.alloc(0);
    this.isClosed = false;
    this.error = null;
    this.checks = new Set();
    this.sock = net.connect(port, "127.0.0.1");
    this.sock.setNoDelay(true);
    this.connected = new Promise((resolve, reject) => {
      this.sock.once("connect", resolve);
      this.sock.once("error", reject);
    });
    this.connected.catch(() => {});
    this.sock.on("data", (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this._notify();
    });
    this.sock.on("error", (e) => {
      this.error = e;
    });
    this.closed = new Promise((resolve) => {
      this.sock.on("close", () => {
        this.isClosed = true;
        this._notify();
        resolve();
      });
    });
  }

  _notify() {
    for (const c of [...this.checks]) c();
  }

  // Resolves with fn()'s first value other than undefined, re-evaluating fn on every arrival of
  // data and on close; rejects if the connection closes first or after timeoutMs.
  waitFor(fn, timeoutMs = 5000, what = "data") {
    return new Promise((resolve, reject) => {
      let timer;
      const done = () => {
        clearTimeout(timer);
        this.checks.delete(check);
      };
      const check = () => {
        let v;
        try {
          v = fn();
        } catch (e) {
          done();
          reject(e);
          return;
        }
        if (v !== undefined) {
          done();
          resolve(v);
        } else if (this.isClosed) {
          done();
          reject(new Error(`connection closed while waiting for ${what}`));
        }
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.checks.add(check);
      check();
    });
  }

  write(data) {
    this.sock.write(data);
  }

  // Writes data one byte at a time, yielding to the event loop between bytes.
  async trickle(data) {
    const b = Buffer.from(data);
    for (let i = 0; i < b.length; i++) {
      this.sock.write(b.subarray(i, i + 1));
      await new Promise((r) => setImmediate(r));
    }
  }

  // Next complete HTTP response.
  readResponse(timeoutMs = 5000) {
    return this.waitFor(
      () => {
        const r = parseResponse(this.buf, this.isClosed);
        if (r) this.buf = this.buf.subarray(r.consumed);
        return r;
      },
      timeoutMs,
      "an HTTP response",
    );
  }

  // Next complete HTTP response, or null if the server closes the connection without one.
  responseOrClose(timeoutMs = 5000) {
    return this.waitFor(
      () => {
        const r = parseResponse(this.buf, this.isClosed);
        if (r) {
          this.buf = this.buf.subarray(r.consumed);
          return r;
        }
        if (this.isClosed) return null;
        return undefined;
      },
      timeoutMs,
      "an HTTP response or the connection to close",
    );
  }

  // Next complete WebSocket frame.
  readFrame(timeoutMs = 5000) {
    return this.waitFor(
      () => {
        const f = parseFrame(this.buf);
        if (f) this.buf = this.buf.subarray(f.consumed);
        return f;
      },
      timeoutMs,
      "a websocket frame",
    );
  }

  waitClosed(timeoutMs = 5000) {
    return withTimeout(this.closed, timeoutMs, "the server to close the connection");
  }

  destroy() {
    this.sock.destroy();
  }
}

// Opens a raw connection and performs a WebSocket handshake on the Engine.IO path. Returns the
// connection (its buffer holds whatever followed the 101) and the 101 response.
export async function rawWsConnect(srv, query = "EIO=4&transport=websocket", { path = EIO_PATH } = {}) {
  const c = new RawConn(srv.port);
  await withTimeout(c.connected, 5000, "TCP connect");
  const key = crypto.randomBytes(16).toString("base64");
  c.write(
    `GET ${path}?${query} HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const r = await c.readResponse();
  if (r.status !== 101) {
    c.destroy();
    throw new Error(`websocket handshake answered ${r.status}`);
  }
  const accept = crypto.createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  if (r.headers["sec-websocket-accept"] !== accept) {
    c.destroy();
    throw new Error(`bad Sec-WebSocket-Accept ${r.headers["sec-websocket-accept"]}`);
  }
  return { conn: c, response: r };
}

// ---------------------------------------------------------------------------------------------
// One server per group; the group's last test checks /stats and stops it.
export function serverGroup(name, args, body) {
  describe(name, () => {
    const ctx = { srv: null, stopped: false, clients: new Set(), raws: new Set() };
    ctx.raw = async () => {
      const c = new RawConn(ctx.srv.port);
      ctx.raws.add(c);
      await withTimeout(c.connected, 5000, "TCP connect");
      return c;
    };
    ctx.rawWs = async (query, opts) => {
      const r = await rawWsConnect(ctx.srv, query, opts);
      ctx.raws.add(r.conn);
      return r;
    };
    ctx.ws = (url, opts) => {
      const c = new WsClient(url, opts);
      ctx.clients.add(c);
      return c;
    };
    ctx.wsOpen = async (opts) => {
      const r = await wsHandshake(ctx.srv, opts);
      ctx.clients.add(r.client);
      return r;
    };
    before(async () => {
      ctx.srv = await startEcho(args);
    });
    after(async () => {
      for (const c of ctx.clients) c.terminate();
      for (const c of ctx.raws) c.destroy();
      if (ctx.srv && !ctx.stopped) {
        ctx.stopped = true;
        await ctx.srv.stop();
      }
    });
    body(ctx);
    test("no sessions left and a clean shutdown", async () => {
      for (const c of ctx.clients) await c.close();
      for (const c of ctx.raws) c.destroy();
      let idleErr;
      try {
        await waitIdle(ctx.srv, { timeoutMs: 10000 });
      } catch (e) {
        idleErr = e;
      }
      ctx.stopped = true;
      await ctx.srv.stop();
      if (idleErr) throw idleErr;
    });
  });
}

