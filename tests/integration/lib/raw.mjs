// Raw TCP for byte-level tests: HTTP/1.1 and RFC 6455 framing written and parsed by hand, so
// that a test sends exactly the bytes it means and sees exactly the bytes the server sent.
//
//   RawConn                      a TCP connection with an awaitable receive buffer
//   parseResponse / parseFrame   one HTTP response / one WebSocket frame from a buffer
//   frame / OP                   a client frame, with every field under the test's control
//   handshakeRequest / acceptFor / wsConnect   the WebSocket opening handshake
//   rst(socket)                  an abortive close (TCP RST)
//
// Used by the eio and hostile suites. Nothing here retries or answers pings on its own.
import crypto from "node:crypto";
import net from "node:net";
import { Checks, sleep, withTimeout } from "./wait.mjs";

export const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
export const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 };

// How long a wait takes by default: a number or { timeoutMs } (both call styles are in use).
const msOf = (o, dflt) => (typeof o === "number" ? o : (o?.timeoutMs ?? dflt));

// A raw TCP connection to 127.0.0.1:port with an awaitable receive buffer. The constructor
// connects at once (`connected` settles when that succeeded or failed); RawConn.connect(port)
// also waits for it. Every wait is bounded: by its timeoutMs, else by the class's waitMs.
export class RawConn {
  static waitMs = 5000;

  constructor(port) {
    this.buf = Buffer.alloc(0); // received and not yet consumed
    this.ended = false; // the server sent FIN (or the socket closed)
    this.isClosed = false; // the socket is fully closed
    this.closedAt = null;
    this.error = null; // e.g. ECONNRESET
    this.checks = new Checks();
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.setNoDelay(true);
    this.connected = new Promise((resolve, reject) => {
      this.socket.once("connect", resolve);
      this.socket.once("error", reject);
    });
    this.connected.catch(() => {});
    this.socket.on("data", (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.checks.notify();
    });
    this.socket.on("end", () => {
      this.ended = true;
      this.closedAt ??= Date.now();
      this.checks.notify();
    });
    this.socket.on("error", (e) => {
      this.error = e;
      this.checks.notify();
    });
    this.socket.on("close", () => {
      this.ended = true;
      this.isClosed = true;
      this.closedAt ??= Date.now();
      this.checks.notify();
    });
  }

  // Connects and resolves with the connection once it is established.
  static async connect(port, { timeoutMs = this.waitMs } = {}) {
    const c = new this(port);
    try {
      await withTimeout(c.connected, timeoutMs, "TCP connect");
    } catch (e) {
      c.destroy();
      throw e;
    }
    return c;
  }

  get waitMs() {
    return this.constructor.waitMs;
  }

  // true once the connection has ended from the server side (FIN, RST or close).
  get gone() {
    return this.ended || this.isClosed || this.error !== null;
  }

  // Writes bytes; a string is written byte for byte (latin1). Returns false, writing nothing,
  // once the socket is gone.
  write(data) {
    if (this.socket.destroyed || this.socket.writableEnded) return false;
    return this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  // Writes chunks one after the other with delayMs between them; stops if the server goes.
  async writeSlowly(chunks, delayMs) {
    for (const c of chunks) {
      if (this.gone) return false;
      this.write(c);
      await sleep(delayMs);
    }
    return true;
  }

  // Writes data one byte at a time, yielding to the event loop between bytes.
  async trickle(data) {
    const b = typeof data === "string" ? Buffer.from(data, "latin1") : Buffer.from(data);
    for (let i = 0; i < b.length; i++) {
      this.write(b.subarray(i, i + 1));
      await new Promise((r) => setImmediate(r));
    }
  }

  // Resolves with test()'s first result other than undefined, re-evaluated on every arrival of
  // data and on the end of the connection; rejects with what test() throws, or on timeout.
  waitFor(test, { timeoutMs = this.waitMs, what = "data" } = {}) {
    return this.checks.wait(
      test,
      timeoutMs,
      () =>
        `timed out after ${timeoutMs} ms waiting for ${what}; ` +
        `received so far: ${JSON.stringify(this.buf.toString("latin1").slice(0, 300))}` +
        `${this.gone ? " (connection gone)" : ""}`,
    );
  }

  // Takes one complete item off the buffer with parse(buf, gone) → {consumed, ...} | undefined.
  // When the connection is gone without one: null if orNull, else an error.
  _take(parse, o, what, orNull) {
    return this.waitFor(
      () => {
        const r = parse(this.buf, this.gone);
        if (r) {
          this.buf = this.buf.subarray(r.consumed);
          return r;
        }
        if (!this.gone) return undefined;
        if (orNull) return null;
        throw new Error(`connection closed while waiting for ${what}; got ${JSON.stringify(this.buf.toString("latin1").slice(0, 300))}`);
      },
      { timeoutMs: msOf(o, this.waitMs), what },
    );
  }

  // The next complete HTTP response (see parseResponse); rejects if the connection ends first.
  readResponse(o) {
    return this._take(parseResponse, o, "an HTTP response", false);
  }

  // The next complete HTTP response, or null if the server closes the connection without one.
  responseOrClose(o) {
    return this._take(parseResponse, o, "an HTTP response or the connection to close", true);
  }

  // The next WebSocket frame from the server (see parseFrame); rejects if the connection ends.
  readFrame(o) {
    return this._take(parseFrame, o, "a WebSocket frame", false);
  }

  // The next WebSocket frame, or null once the connection has ended (no more will come).
  frameOrClose(o) {
    return this._take(parseFrame, o, "a WebSocket frame", true);
  }

  // Resolves when the server has closed the connection; rejects on timeout.
  waitClosed(o) {
    return this.waitFor(() => (this.gone ? true : undefined), {
      timeoutMs: msOf(o, this.waitMs),
      what: "the server to close the connection",
    });
  }

  // Resolves true if the server closes within timeoutMs, false otherwise (never rejects).
  async closesWithin(timeoutMs) {
    try {
      await this.waitClosed({ timeoutMs });
      return true;
    } catch {
      return false;
    }
  }

  destroy() {
    this.socket.destroy();
  }
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

// ---- HTTP/1.1 ----

// Parses one complete HTTP/1.x response at the start of buf. Returns
//   { status, reason, version, headers (lower-cased names; repeated ones joined with ", "),
//     rawHeaders ([name, value] in order), body: Buffer, text, consumed }
// or undefined while it is incomplete. A response without Content-Length or chunked coding
// (other than 1xx/204/304) is complete only once the connection has ended (ended = true).
export function parseResponse(buf, ended = false) {
  const headEnd = buf.indexOf("\r\n\r\n");
  if (headEnd < 0) return undefined;
  const lines = buf.subarray(0, headEnd).toString("latin1").split("\r\n");
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
  if ((status >= 100 && status < 200) || status === 204 || status === 304) {
    body = Buffer.alloc(0);
  } else if (/chunked/i.test(headers["transfer-encoding"] || "")) {
    const parts = [];
    for (;;) {
      const le = buf.indexOf("\r\n", off);
      if (le < 0) return undefined;
      const size = parseInt(buf.subarray(off, le).toString("latin1").split(";")[0], 16);
      if (Number.isNaN(size)) throw new Error("bad chunk size from server");
      off = le + 2;
      if (size === 0) {
        // trailers until an empty line
        for (;;) {
          const te = buf.indexOf("\r\n", off);
          if (te < 0) return undefined;
          const empty = te === off;
          off = te + 2;
          if (empty) break;
        }
        break;
      }
      if (buf.length < off + size + 2) return undefined;
      parts.push(buf.subarray(off, off + size));
      off += size + 2;
    }
    body = Buffer.concat(parts);
  } else if (headers["content-length"] !== undefined) {
    const n = Number(headers["content-length"]);
    if (buf.length < off + n) return undefined;
    body = buf.subarray(off, off + n);
    off += n;
  } else {
    if (!ended) return undefined; // body delimited by the end of the connection
    body = buf.subarray(off);
    off = buf.length;
  }
  return { status, reason: m[3] ?? "", version: m[1], headers, rawHeaders, body, text: body.toString("utf8"), consumed: off };
}

// ---- WebSocket (RFC 6455) ----

// Builds a client frame. opts:
//   fin (true), rsv (0..7), opcode, payload (Buffer|string), mask (true), key (Buffer(4)),
//   lenMode ("auto" | 7 | 16 | 64), declaredLen (override the length field; the payload
//   bytes given are still appended as is), topBit (set the 64-bit length's top bit).
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

// Parses one frame at the start of buf (unmasking it if it is masked). Returns
//   { fin, rsv, opcode, masked, payload: Buffer, text, code, reason, consumed }
// (code and reason for close frames only), or undefined while it is incomplete.
export function parseFrame(buf) {
  if (buf.length < 2) return undefined;
  const b0 = buf[0];
  const b1 = buf[1];
  let len = b1 & 0x7f;
  let off = 2;
  if (len === 126) {
    if (buf.length < 4) return undefined;
    len = buf.readUInt16BE(2);
    off = 4;
  } else if (len === 127) {
    if (buf.length < 10) return undefined;
    len = Number(buf.readBigUInt64BE(2));
    off = 10;
  }
  const masked = (b1 & 0x80) !== 0;
  let key = null;
  if (masked) {
    if (buf.length < off + 4) return undefined;
    key = buf.subarray(off, off + 4);
    off += 4;
  }
  if (buf.length < off + len) return undefined;
  const payload = Buffer.from(buf.subarray(off, off + len));
  if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
  const f = {
    fin: (b0 & 0x80) !== 0,
    rsv: (b0 >> 4) & 7,
    opcode: b0 & 0x0f,
    masked,
    payload,
    text: payload.toString("utf8"),
    consumed: off + len,
  };
  if (f.opcode === OP.CLOSE) {
    f.code = payload.length >= 2 ? payload.readUInt16BE(0) : null;
    f.reason = payload.length > 2 ? payload.subarray(2).toString("utf8") : "";
  }
  return f;
}

// The bytes of a WebSocket upgrade request; returns { raw, key }. extra: further [name, value]
// headers; omit: names of the standard headers to leave out (a null value leaves one out too).
export function handshakeRequest({
  path = "/engine.io/?EIO=4&transport=websocket",
  host = "127.0.0.1",
  key = crypto.randomBytes(16).toString("base64"),
  version = "13",
  method = "GET",
  httpVersion = "HTTP/1.1",
  extra = [],
  omit = [],
} = {}) {
  const hs = [
    ["Host", host],
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

// Opens a connection (of class Conn, a RawConn by default) and performs a WebSocket
// handshake on `path`; `after` bytes go in the same write as the request. Throws unless the
// answer is a 101 with the right Sec-WebSocket-Accept. Returns { conn, response }; the
// connection's buffer holds whatever followed the 101.
export async function wsConnect(port, { path, host, after, Conn = RawConn } = {}) {
  const conn = await Conn.connect(port);
  try {
    const { raw, key } = handshakeRequest({ path, host });
    conn.write(after ? Buffer.concat([raw, after]) : raw);
    const response = await conn.readResponse();
    if (response.status !== 101) throw new Error(`websocket handshake answered ${response.status} ${response.text}`);
    if (response.headers["sec-websocket-accept"] !== acceptFor(key)) {
      throw new Error(`bad Sec-WebSocket-Accept ${response.headers["sec-websocket-accept"]}`);
    }
    return { conn, response };
  } catch (e) {
    conn.destroy();
    throw e;
  }
}
