// Hostile HTTP/1.1 input against eio_echo: limits, malformed requests, versions,
// transfer codings, routing errors, keep-alive/pipelining and slow clients. After each
// group the healthy Engine.IO session must still echo and /stats must return to baseline.
import { it } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import {
  Conn,
  buildRequest,
  expectHttpError,
  request,
  hostileFile,
  sleep,
  stats,
  pollOpen,
  pollPost,
  pollGet,
  pollClose,
  pollPath,
} from "./util.mjs";

const MAX_PAYLOAD = 10000;
const REQUEST_TIMEOUT = 1000;
const KEEPALIVE_TIMEOUT = 1500;
let env;
let port;
const T = { timeout: 15000 };
const group = hostileFile(
  [
    "--max-payload", String(MAX_PAYLOAD),
    "--request-timeout", String(REQUEST_TIMEOUT),
    "--keepalive-timeout", String(KEEPALIVE_TIMEOUT),
    "--ping-interval", "60000",
    "--ping-timeout", "30000",
  ],
  (e) => {
    env = e;
    port = e.port;
  },
  T,
);

const req = (path = "/stats", extra = "") => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

/** Runs fn with a fresh polling session, closing it afterwards whatever happens. */
async function withSession(fn) {
  const sid = await pollOpen(port);
  try {
    return await fn(sid);
  } finally {
    await pollClose(port, sid);
  }
}

group("limits", () => {
  it("a head just under 8192 bytes is accepted", T, async () => {
    const base = "GET /stats HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n".length;
    const head = req("/stats", `X-Pad: ${"a".repeat(8000 - base)}\r\n`);
    assert.equal(head.length, 8000);
    const c = await Conn.connect(port);
    c.write(head);
    const res = await c.readResponse();
    assert.equal(res.status, 200);
    c.destroy();
  });

  it("a head over 8192 bytes (one long header) → 431", T, async () => {
    await expectHttpError(port, req("/stats", `X-Pad: ${"a".repeat(9000)}\r\n`), 431);
  });

  it("a head that never ends (16 KiB of headers, no blank line) → 431 without waiting", T, async () => {
    let s = "GET /stats HTTP/1.1\r\nHost: x\r\n";
    for (let i = 0; s.length < 16384; i++) s += `X-H${i}: ${"v".repeat(60)}\r\n`;
    await expectHttpError(port, s, 431, { timeoutMs: 900 });
  });

  it("a 9000-byte request target → 431", T, async () => {
    await expectHttpError(port, req(`/stats?${"q".repeat(9000)}`), 431);
  });

  it("exactly 100 header fields are accepted", T, async () => {
    let extra = "";
    for (let i = 0; i < 99; i++) extra += `X-H${i}: v\r\n`; // + Host = 100
    const c = await Conn.connect(port);
    c.write(req("/stats", extra));
    const res = await c.readResponse();
    assert.equal(res.status, 200, `100 header fields answered ${res.status}`);
    c.destroy();
  });

  it("101 header fields → 431", T, async () => {
    let extra = "";
    for (let i = 0; i < 100; i++) extra += `X-H${i}: v\r\n`; // + Host = 101
    await expectHttpError(port, req("/stats", extra), 431);
  });

  it("1000 header fields → 431", T, async () => {
    let extra = "";
    for (let i = 0; i < 999; i++) extra += `X${i}:\r\n`;
    await expectHttpError(port, req("/stats", extra), 431);
  });

  it("Engine.IO POST of exactly max-payload bytes is accepted", T, async () => {
    await withSession(async (sid) => {
      const body = "4" + "x".repeat(MAX_PAYLOAD - 1);
      const res = await pollPost(port, sid, body);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.text, "ok");
      const got = await pollGet(port, sid);
      assert.equal(got.status, 200);
      assert.equal(got.text, body);
    });
  });

  it("Engine.IO POST with Content-Length max-payload+1 → 413 before the body is sent", T, async () => {
    await withSession(async (sid) => {
      const head = `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${MAX_PAYLOAD + 1}\r\n\r\n`;
      await expectHttpError(port, head, 413);
    });
  });

  it("Engine.IO POST with a huge Content-Length (2^53) → 413", T, async () => {
    await withSession(async (sid) => {
      const head = `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nContent-Length: 9007199254740992\r\n\r\n`;
      await expectHttpError(port, head, 413);
    });
  });

  it("Content-Length that overflows 64 bits → 400 or 413", T, async () => {
    await withSession(async (sid) => {
      const head = `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n`;
      await expectHttpError(port, head, [400, 413]);
    });
  });

  it("chunked Engine.IO POST whose decoded size grows over max-payload → 413", T, async () => {
    await withSession(async (sid) => {
      const c = await Conn.connect(port);
      let s = `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n4\r\n`;
      for (let i = 0; i < 6; i++) s += `7D0\r\n${"x".repeat(2000)}\r\n`; // 12001 bytes in all
      c.write(s);
      // deliberately no terminating 0-chunk: the limit must trigger on its own
      await expectHttpError(port, null, 413, { conn: c });
    });
  });
});

group("malformed requests → 400", () => {
  const cases = {
    "garbage line": "GARBAGE\r\n\r\n",
    "missing HTTP version": "GET /stats\r\nHost: x\r\n\r\n",
    "double space in request line": "GET  /stats HTTP/1.1\r\nHost: x\r\n\r\n",
    "extra token after version": "GET /stats HTTP/1.1 x\r\nHost: x\r\n\r\n",
    "non-token char in method": "G(T /stats HTTP/1.1\r\nHost: x\r\n\r\n",
    "control char in target": "GET /st\x01ats HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in target": "GET /st\x00ats HTTP/1.1\r\nHost: x\r\n\r\n",
    "lowercase http version": "GET /stats http/1.1\r\nHost: x\r\n\r\n",
    "version without dot": "GET /stats HTTP/11\r\nHost: x\r\n\r\n",
    "header without colon": "GET /stats HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "space before colon": "GET /stats HTTP/1.1\r\nHost : x\r\n\r\n",
    "empty header name": "GET /stats HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n",
    "non-token header name": "GET /stats HTTP/1.1\r\nHost: x\r\nX(a): v\r\n\r\n",
    "obsolete line folding": "GET /stats HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "control char in header value": "GET /stats HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "NUL in header value": "GET /stats HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bare CR in header value": "GET /stats HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    "Content-Length not a number": "POST /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "negative Content-Length": "POST /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "Content-Length with sign": "POST /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\n",
    "two different Content-Lengths": "POST /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n4a4",
    "comma-list Content-Length with different values": "POST /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 3\r\n\r\n4a4",
    "TLS ClientHello on the plain port": Buffer.concat([
      Buffer.from("16030100a5010000a10303", "hex"),
      crypto.randomBytes(64),
      Buffer.from("\r\n\r\n"),
    ]),
  };
  for (const [name, raw] of Object.entries(cases)) {
    it(name, T, async () => {
      await expectHttpError(port, raw, 400);
    });
  }
});

group("HTTP versions", () => {
  it("HTTP/2.0 request line → 505", T, async () => {
    await expectHttpError(port, "GET /stats HTTP/2.0\r\nHost: x\r\n\r\n", 505);
  });
  it("HTTP/3.0 request line → 505", T, async () => {
    await expectHttpError(port, "GET /stats HTTP/3.0\r\nHost: x\r\n\r\n", 505);
  });
  it("HTTP/2 connection preface → 505", T, async () => {
    await expectHttpError(port, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
  });
  it("HTTP/1.0 without keep-alive: answered, then closed", T, async () => {
    const c = await Conn.connect(port);
    c.write("GET /stats HTTP/1.0\r\n\r\n");
    const res = await c.readResponse();
    assert.equal(res.status, 200);
    await c.waitClosed();
    c.destroy();
  });
  it("HTTP/1.0 with Connection: keep-alive serves a second request", T, async () => {
    const c = await Conn.connect(port);
    c.write("GET /stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert.equal((await c.readResponse()).status, 200);
    c.write("GET /stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert.equal((await c.readResponse()).status, 200);
    c.destroy();
  });
});

group("transfer codings", () => {
  it("Transfer-Encoding: gzip → 501", T, async () => {
    await withSession(async (sid) => {
      await expectHttpError(port, `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n`, 501);
    });
  });
  it("Transfer-Encoding: identity → 501", T, async () => {
    await withSession(async (sid) => {
      await expectHttpError(port, `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n4a`, [501, 400]);
    });
  });
  it("chunked + Content-Length → 400", T, async () => {
    await withSession(async (sid) => {
      await expectHttpError(
        port,
        `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n4a\r\n0\r\n\r\n`,
        400,
      );
    });
  });
  it("chunked + Content-Length (Content-Length after Transfer-Encoding) → 400", T, async () => {
    await withSession(async (sid) => {
      await expectHttpError(
        port,
        `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n2\r\n4a\r\n0\r\n\r\n`,
        400,
      );
    });
  });
  it("chunked Engine.IO POST is accepted and the message echoed", T, async () => {
    await withSession(async (sid) => {
      const c = await Conn.connect(port);
      c.write(`POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n4he\r\n3\r\nllo\r\n0\r\n\r\n`);
      const res = await c.readResponse();
      assert.equal(res.status, 200, res.text);
      assert.equal(res.text, "ok");
      c.destroy();
      const got = await pollGet(port, sid);
      assert.equal(got.text, "4hello");
    });
  });
  it("chunked POST split into many small TCP writes, with extensions and trailers", T, async () => {
    await withSession(async (sid) => {
      const c = await Conn.connect(port);
      const raw = `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\n4w\r\nA;foo="bar"\r\norld-abcde\r\n0\r\nX-Trailer: yes\r\n\r\n`;
      const chunks = [];
      for (let i = 0; i < raw.length; i += 3) chunks.push(raw.slice(i, i + 3));
      await c.writeSlowly(chunks, 2);
      const res = await c.readResponse();
      assert.equal(res.status, 200, res.text);
      c.destroy();
      const got = await pollGet(port, sid);
      assert.equal(got.text, "4world-abcde");
    });
  });
  it("malformed chunk size → 400", T, async () => {
    await withSession(async (sid) => {
      await expectHttpError(port, `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n4a\r\n0\r\n\r\n`, 400);
    });
  });
  it("chunk data longer than its size → 400", T, async () => {
    await withSession(async (sid) => {
      await expectHttpError(port, `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n4abcdef\r\n0\r\n\r\n`, 400);
    });
  });
  it("chunk size beyond 64 bits → 400 or 413", T, async () => {
    await withSession(async (sid) => {
      await expectHttpError(port, `POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n4a\r\n0\r\n\r\n`, [400, 413]);
    });
  });
});

group("routing errors", () => {
  // Routing errors are ordinary answers: the request was well framed, so the
  // connection stays usable (unlike framing errors, after which it is closed).
  it("GET /nope → 404, and the connection keeps serving", T, async () => {
    const c = await Conn.connect(port);
    c.write(req("/nope"));
    const res = await c.readResponse();
    assert.equal(res.status, 404);
    assert.doesNotMatch(res.headers.connection ?? "", /close/i);
    c.write(req("/stats"));
    assert.equal((await c.readResponse()).status, 200);
    c.destroy();
  });
  it("POST /stats → 405 with an Allow header", T, async () => {
    const c = await Conn.connect(port);
    c.write("POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    const res = await c.readResponse();
    assert.equal(res.status, 405);
    assert.ok(res.headers.allow, `405 must carry Allow (RFC 9110 §15.5.6); headers ${JSON.stringify(res.headers)}`);
    c.destroy();
  });
  it("a request pipelined after a 404 is answered in order", T, async () => {
    const c = await Conn.connect(port);
    c.write(req("/nope") + req("/stats"));
    assert.equal((await c.readResponse()).status, 404);
    assert.equal((await c.readResponse()).status, 200);
    c.destroy();
  });
});

group("keep-alive and pipelining", () => {
  it("sequential requests on one keep-alive connection", T, async () => {
    const c = await Conn.connect(port);
    for (let i = 0; i < 5; i++) {
      c.write(req());
      const res = await c.readResponse();
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.headers.connection ?? "", /close/i);
    }
    assert.equal(c.gone, false);
    c.destroy();
  });

  it("10 requests in one write are answered in order", T, async () => {
    const c = await Conn.connect(port);
    let s = "";
    for (let i = 0; i < 10; i++) s += i % 2 ? req("/stats") : req("/stats?x=" + i);
    c.write(s);
    for (let i = 0; i < 10; i++) {
      const res = await c.readResponse();
      assert.equal(res.status, 200);
      JSON.parse(res.text);
    }
    c.destroy();
  });

  it("pipelined Engine.IO POSTs, /stats and a poll are answered in order", T, async () => {
    await withSession(async (sid) => {
      const c = await Conn.connect(port);
      c.write(
        Buffer.concat([
          buildRequest({ method: "POST", path: pollPath(sid), body: "4a" }),
          buildRequest({ method: "POST", path: pollPath(sid), body: "4b" }),
          buildRequest({ path: "/stats" }),
          buildRequest({ path: pollPath(sid) }),
        ]),
      );
      const r1 = await c.readResponse();
      const r2 = await c.readResponse();
      const r3 = await c.readResponse();
      const r4 = await c.readResponse();
      assert.deepEqual([r1.status, r1.text, r2.status, r2.text], [200, "ok", 200, "ok"]);
      assert.equal(r3.status, 200);
      assert.ok("sessions" in JSON.parse(r3.text), "third response is /stats");
      assert.equal(r4.status, 200);
      let msgs = r4.text.split("\x1e");
      if (msgs.length < 2) {
        c.write(buildRequest({ path: pollPath(sid) }));
        msgs = msgs.concat((await c.readResponse()).text.split("\x1e"));
      }
      assert.deepEqual(msgs, ["4a", "4b"]);
      c.destroy();
    });
  });

  it("a GET with a body, pipelined: the body is skipped, the next request answered", T, async () => {
    const c = await Conn.connect(port);
    c.write("GET /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\nGET /nope HTTP/1.1\r\n" + req("/stats"));
    const r1 = await c.readResponse();
    assert.equal(r1.status, 200);
    const r2 = await c.readResponse();
    assert.equal(r2.status, 200, "the 20 body bytes must not be parsed as a request");
    c.destroy();
  });

  it("pipelined requests ending in a malformed one: 200, 200, 400, close", T, async () => {
    const c = await Conn.connect(port);
    c.write(req() + req() + "BAD\r\n\r\n");
    assert.equal((await c.readResponse()).status, 200);
    assert.equal((await c.readResponse()).status, 200);
    await expectHttpError(port, null, 400, { conn: c });
  });

  it("a request written one byte at a time is answered", T, async () => {
    const c = await Conn.connect(port);
    await c.writeSlowly([...req()], 3);
    assert.equal((await c.readResponse()).status, 200);
    c.destroy();
  });

  it("bare LF line endings are accepted", T, async () => {
    const c = await Conn.connect(port);
    c.write("GET /stats HTTP/1.1\nHost: x\n\n");
    assert.equal((await c.readResponse()).status, 200);
    c.destroy();
  });
});

group("slow and idle clients", () => {
  it("slowloris (a header byte every 200 ms) → 408 and close at request-timeout", T, async () => {
    const c = await Conn.connect(port);
    const start = Date.now();
    c.write("GET /stats HTTP/1.1\r\nHost: x\r\n");
    const dribble = c.writeSlowly("X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".split(""), 200);
    const res = await c.readResponse({ timeoutMs: REQUEST_TIMEOUT + 3000 });
    const elapsed = Date.now() - start;
    assert.equal(res.status, 408);
    assert.ok(elapsed >= REQUEST_TIMEOUT - 100, `answered after ${elapsed} ms, before request-timeout`);
    assert.ok(elapsed <= REQUEST_TIMEOUT + 1500, `answered after ${elapsed} ms`);
    await c.waitClosed();
    await dribble;
    c.destroy();
  });

  it("slow body (one byte every 200 ms) → 408 and close at request-timeout", T, async () => {
    await withSession(async (sid) => {
      const c = await Conn.connect(port);
      const start = Date.now();
      c.write(`POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n4`);
      const dribble = c.writeSlowly("x".repeat(49).split(""), 200);
      const res = await c.readResponse({ timeoutMs: REQUEST_TIMEOUT + 3000 });
      const elapsed = Date.now() - start;
      assert.equal(res.status, 408);
      assert.ok(elapsed <= REQUEST_TIMEOUT + 1500, `answered after ${elapsed} ms`);
      await c.waitClosed();
      await dribble;
      c.destroy();
    });
  });

  it("slowloris at one byte per second → 408 / closed by request-timeout", T, async () => {
    const c = await Conn.connect(port);
    const start = Date.now();
    const dribble = c.writeSlowly("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n".split(""), 1000);
    const res = await c.readResponse({ timeoutMs: REQUEST_TIMEOUT + 3000 });
    assert.equal(res.status, 408);
    await c.waitClosed();
    assert.ok(Date.now() - start <= REQUEST_TIMEOUT + 2500);
    await dribble;
    c.destroy();
  });

  it("30 concurrent slowloris connections do not block others, and all get closed", T, async () => {
    const conns = await Promise.all(Array.from({ length: 30 }, () => Conn.connect(port)));
    const dribbles = conns.map((c) => c.writeSlowly(["G", "E", "T", " ", "/", "s", "t", "a", "t", "s", " ", "H", "T", "T", "P"], 150));
    await sleep(200);
    const t0 = Date.now();
    await env.healthy.echo();
    const s = await stats(port);
    assert.ok(Date.now() - t0 < 800, "the server answered slowly while slowloris connections were open");
    assert.ok(s.connections >= 30, `stats should count the slow connections: ${JSON.stringify(s)}`);
    for (const c of conns) await c.waitClosed({ timeoutMs: REQUEST_TIMEOUT + 3000 });
    await Promise.all(dribbles);
    conns.forEach((c) => c.destroy());
  });

  it("an idle keep-alive connection is closed after keepalive-timeout", T, async () => {
    const c = await Conn.connect(port);
    c.write(req());
    assert.equal((await c.readResponse()).status, 200);
    const t0 = Date.now();
    await c.waitClosed({ timeoutMs: KEEPALIVE_TIMEOUT + 3000 });
    const idle = Date.now() - t0;
    assert.ok(idle >= KEEPALIVE_TIMEOUT - 300, `closed after ${idle} ms idle, before keepalive-timeout`);
    c.destroy();
  });

  it("a connection that never sends anything is closed", T, async () => {
    const c = await Conn.connect(port);
    await c.waitClosed({ timeoutMs: Math.max(REQUEST_TIMEOUT, KEEPALIVE_TIMEOUT) + 3000 });
    c.destroy();
  });

  it("a long-poll GET outlives request-timeout and keepalive-timeout and gets the message", T, async () => {
    await withSession(async (sid) => {
      const c = await Conn.connect(port);
      c.write(buildRequest({ path: pollPath(sid) }));
      await sleep(KEEPALIVE_TIMEOUT + 700);
      assert.equal(c.gone, false, "the pending long-poll was closed by a timeout");
      assert.equal(c.buf.length, 0, `unexpected early answer: ${c.buf.toString("latin1")}`);
      const p = await pollPost(port, sid, "4late");
      assert.equal(p.status, 200);
      const res = await c.readResponse();
      assert.equal(res.status, 200);
      assert.equal(res.text, "4late");
      c.destroy();
    });
  });
});

group("abrupt clients", () => {
  it("50 clients that vanish mid-request", T, async () => {
    const conns = await Promise.all(Array.from({ length: 50 }, () => Conn.connect(port)));
    conns.forEach((c, i) => c.write(i % 2 ? "GET /sta" : "POST /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n4abc"));
    await sleep(50);
    conns.forEach((c, i) => (i % 3 ? c.destroy() : c.socket.resetAndDestroy()));
  });

  it("a client that half-closes after its request still gets the response", T, async () => {
    const c = await Conn.connect(port);
    c.socket.end(req("/stats", "Connection: close\r\n"));
    const res = await c.readResponse();
    assert.equal(res.status, 200);
    await c.waitClosed();
    c.destroy();
  });

  it("100 concurrent connections each get /stats", T, async () => {
    const res = await Promise.all(Array.from({ length: 100 }, () => request(port, { path: "/stats" }, { timeoutMs: 5000 })));
    assert.ok(res.every((r) => r.status === 200));
  });
});
