// Edge cases of eio_echo below and around the Engine.IO protocol: HTTP framing (bytes one at a
// time, pipelining, malformed and oversized heads), the server's timeouts, --path and
// --max-payload, the upgrade timeout, WebSocket framing (fragments, control frames, protocol
// violations sent as raw bytes), and isolation between concurrent sessions.
//
// Where the contract leaves the exact answer open (e.g. which 4xx for an oversized head) the
// tests accept any reasonable one, but always require a bounded reaction and a server that keeps
// serving; each group ends with /stats back to zero sessions and a clean (sanitizer-clean) stop.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { waitUntil } from "../lib/server.mjs";
import {
  startEcho,
  RawConn,
  WsClient,
  request,
  pollUrl,
  wsUrl,
  eioUrl,
  getStats,
  pollingHandshake,
  withoutPings,
  errorBody,
  withTimeout,
  wsFrame,
  serverGroup as group,
  rst,
} from "./util.mjs";

const HB = ["--ping-interval", "300", "--ping-timeout", "200"];

async function closePolling(srv, sid) {
  const r = await request(pollUrl(srv, sid), { method: "POST", body: "1" });
  assert.equal(r.status, 200);
}

// The server still answers after whatever the test did.
async function assertAlive(srv) {
  const s = await getStats(srv);
  assert.equal(typeof s.sessions, "number");
}

// A refused request: either an error status from `allowed`, or the connection closed without a
// response. Either way the connection must end.
async function assertRefused(conn, allowed, what) {
  const r = await conn.responseOrClose(5000);
  if (r) assert.ok(allowed.includes(r.status), `${what}: status ${r.status}, expected one of ${allowed}`);
  await conn.waitClosed(5000).catch(() => {
    // keeping the connection open after an error answer is acceptable only if it still works
  });
  return r;
}

// Reads frames until the server's close frame (answered, as a client must) or the end of the
// connection; checks the close code when there is one. The TCP connection must then end.
async function expectWsClose(conn, codes, what) {
  for (;;) {
    let f;
    try {
      f = await conn.readFrame(5000);
    } catch (e) {
      if (conn.gone) break; // closed without a close frame: acceptable
      throw new Error(`${what}: ${e.message}`);
    }
    if (f.opcode === 0x8) {
      if (f.payload.length >= 2) {
        const code = f.payload.readUInt16BE(0);
        assert.ok(codes.includes(code), `${what}: close code ${code}, expected one of ${codes}`);
      }
      if (!conn.isClosed) conn.write(wsFrame(0x8, f.payload.subarray(0, 2)));
      break;
    }
  }
  await conn.waitClosed(5000);
}

// A raw websocket session: handshake plus the open packet.
async function rawSession(ctx, query) {
  const { conn } = await ctx.rawWs(query);
  const open = await conn.readFrame();
  assert.equal(open.opcode, 0x1);
  assert.ok(open.payload.toString().startsWith("0"), "open packet first");
  return conn;
}

async function nextDataFrame(conn) {
  for (;;) {
    const f = await conn.readFrame();
    if (f.opcode === 0x1 && f.payload.toString() === "2") {
      conn.write(wsFrame(0x1, Buffer.from("3")));
      continue;
    }
    return f;
  }
}

// ---------------------------------------------------------------------------------------------

group("HTTP framing", HB, (ctx) => {
  test("a handshake sent one byte at a time", async () => {
    const c = await ctx.raw();
    await c.trickle(`GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.ok(r.body.toString().startsWith("0{"), r.body.toString());
    c.destroy();
    await closePolling(ctx.srv, JSON.parse(r.body.toString().slice(1)).sid);
  });

  test("pipelined requests are answered in order", async () => {
    const c = await ctx.raw();
    c.write(
      "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n" +
        "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n" +
        "GET /engine.io/?EIO=4&transport=nope HTTP/1.1\r\nHost: x\r\n\r\n" +
        "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    const r1 = await c.readResponse();
    const r2 = await c.readResponse();
    const r3 = await c.readResponse();
    const r4 = await c.readResponse();
    assert.equal(r1.status, 200);
    assert.equal(typeof JSON.parse(r1.body.toString()).sessions, "number");
    assert.equal(r2.status, 200);
    assert.ok(r2.body.toString().startsWith("0{"));
    assert.equal(r3.status, 400);
    assert.equal(JSON.parse(r3.body.toString()).code, 0);
    assert.equal(r4.status, 200);
    await c.waitClosed();
    await closePolling(ctx.srv, JSON.parse(r2.body.toString().slice(1)).sid);
  });

  test("a POST whose head and body arrive in pieces", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const c = await ctx.raw();
    const body = Buffer.from(`4piece € 😀`);
    await c.trickle(
      `POST /engine.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\nHost: x\r\n` +
        `Content-Type: text/plain;charset=UTF-8\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    await c.trickle(body);
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), "ok");
    c.destroy();
    const g = await request(pollUrl(ctx.srv, sid));
    assert.deepEqual(withoutPings(g.text), ["4piece € 😀"]);
    await closePolling(ctx.srv, sid);
  });

  test("a chunked POST body is reassembled", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const c = await ctx.raw();
    const part1 = Buffer.from("4chunk€");
    const part2 = Buffer.from("ed 😀\x1e4two");
    c.write(
      Buffer.concat([
        Buffer.from(`POST /engine.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`),
        Buffer.from(`${part1.length.toString(16)}\r\n`),
        part1,
        Buffer.from(`\r\n${part2.length.toString(16)};ext=1\r\n`),
        part2,
        Buffer.from("\r\n0\r\n\r\n"),
      ]),
    );
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), "ok");
    c.destroy();
    const g = await request(pollUrl(ctx.srv, sid));
    assert.deepEqual(withoutPings(g.text), ["4chunk€ed 😀", "4two"]);
    await closePolling(ctx.srv, sid);
  });

  test("an HTTP/1.0 request is answered and the connection closed", async () => {
    const c = await ctx.raw();
    c.write("GET /stats HTTP/1.0\r\n\r\n");
    const r = await c.responseOrClose(5000);
    assert.ok(r, "a response");
    assert.equal(r.status, 200);
    await c.waitClosed(3000);
  });

  test("200 requests on one keep-alive connection", async () => {
    const c = await ctx.raw();
    for (let i = 0; i < 200; i++) {
      c.write("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
      const r = await c.readResponse();
      assert.equal(r.status, 200);
    }
    c.destroy();
  });

  for (const [name, bytes] of [
    ["garbage request line", "GARBAGE\r\n\r\n"],
    ["binary junk", "\x00\x01\x02\xff\xfe\r\n\r\n"],
    ["missing target", "GET  HTTP/1.1\r\nHost: x\r\n\r\n"],
    ["unknown HTTP version", "GET /stats HTTP/7.3\r\nHost: x\r\n\r\n"],
    ["header without colon", "GET /stats HTTP/1.1\r\nHost x\r\n\r\n"],
    ["invalid Content-Length", "POST /engine.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"],
    ["negative Content-Length", "POST /engine.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"],
    ["huge Content-Length", "POST /engine.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"],
    ["bad chunk size", "POST /engine.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"],
  ]) {
    test(`malformed request (${name}) → 4xx or closed, server unharmed`, async () => {
      const c = await ctx.raw();
      c.write(Buffer.from(bytes, "latin1"));
      await assertRefused(c, [400, 404, 411, 413, 431, 501, 505], name);
      c.destroy();
      await assertAlive(ctx.srv);
    });
  }

  test("a head over 8 KiB → 431 (or another 4xx) or closed", async () => {
    const c = await ctx.raw();
    c.write(`GET /stats HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20000)}\r\n\r\n`);
    await assertRefused(c, [400, 413, 414, 431], "big head");
    c.destroy();
    await assertAlive(ctx.srv);
  });

  test("a head that never ends is not buffered without bound", async () => {
    const c = await ctx.raw();
    c.write("GET /stats HTTP/1.1\r\nHost: x\r\n");
    const chunk = `X-Fill: ${"b".repeat(1000)}\r\n`;
    for (let i = 0; i < 200 && !c.isClosed; i++) {
      c.write(chunk);
      await new Promise((r) => setImmediate(r));
    }
    await assertRefused(c, [400, 413, 414, 431], "endless head");
    c.destroy();
    await assertAlive(ctx.srv);
  });

  test("too many header fields → 431 (or another 4xx) or closed", async () => {
    const c = await ctx.raw();
    let h = "GET /stats HTTP/1.1\r\nHost: x\r\n";
    for (let i = 0; i < 300; i++) h += `X-H${i}: v\r\n`;
    c.write(h + "\r\n");
    await assertRefused(c, [400, 413, 431], "many headers");
    c.destroy();
    await assertAlive(ctx.srv);
  });

  test("a long unknown sid → 400 code 1", async () => {
    const r = await request(pollUrl(ctx.srv, "x".repeat(2000)));
    assert.equal(r.status, 400);
    assert.equal(errorBody(r).code, 1);
  });

  test("percent-encoded query parameters are decoded", async () => {
    const r = await request(`${ctx.srv.url}/engine.io/?EIO=%34&transport=%70olling`);
    assert.equal(r.status, 200);
    assert.ok(r.text.startsWith("0{"));
    const sid = JSON.parse(r.text.slice(1)).sid;
    const g = await request(`${ctx.srv.url}/engine.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}&t=a%20b`, {
      method: "POST",
      body: "1",
    });
    assert.equal(g.status, 200);
  });

  test("an unknown path is not an Engine.IO endpoint", async () => {
    const r = await request(`${ctx.srv.url}/nope/?EIO=4&transport=polling`);
    assert.notEqual(r.status, 200);
    assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
  });

  test("a client that resets mid-request does not disturb the server", async () => {
    for (let i = 0; i < 20; i++) {
      const c = await ctx.raw();
      c.write(`POST /engine.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n4abc`);
      rst(c.socket);
    }
    await assertAlive(ctx.srv);
  });
});

// ---------------------------------------------------------------------------------------------

group(
  "server timeouts (--request-timeout 300 --keepalive-timeout 300)",
  ["--request-timeout", "300", "--keepalive-timeout", "300", "--ping-interval", "1000", "--ping-timeout", "1000"],
  (ctx) => {
    test("an unfinished head → 408 or closed after the request timeout", async () => {
      const c = await ctx.raw();
      const t0 = Date.now();
      c.write("GET /stats HTTP/1.1\r\nHost: x\r\n");
      const r = await c.responseOrClose(5000);
      const dt = Date.now() - t0;
      if (r) assert.equal(r.status, 408);
      assert.ok(dt >= 200, `reacted after ${dt} ms, before the request timeout`);
      await c.waitClosed(3000);
    });

    test("an unfinished body → 408 or closed after the request timeout", async () => {
      const { sid } = await pollingHandshake(ctx.srv);
      const c = await ctx.raw();
      const t0 = Date.now();
      c.write(`POST /engine.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n4ab`);
      const r = await c.responseOrClose(5000);
      const dt = Date.now() - t0;
      if (r) assert.equal(r.status, 408);
      assert.ok(dt >= 200, `reacted after ${dt} ms`);
      await c.waitClosed(3000);
      // the session itself may survive the broken POST or not; tidy up either way
      await request(pollUrl(ctx.srv, sid), { method: "POST", body: "1" });
    });

    test("an idle keep-alive connection is closed after the keep-alive timeout", async () => {
      const c = await ctx.raw();
      c.write("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
      assert.equal((await c.readResponse()).status, 200);
      const t0 = Date.now();
      await c.waitClosed(3000);
      const dt = Date.now() - t0;
      assert.ok(dt >= 200, `closed after ${dt} ms, before the keep-alive timeout`);
    });

    test("a connection that never sends a byte is closed eventually", async () => {
      const c = await ctx.raw();
      await c.waitClosed(3000);
    });

    test("a long-poll GET outlives both timeouts", async () => {
      const { sid } = await pollingHandshake(ctx.srv);
      const t0 = Date.now();
      const g = await request(pollUrl(ctx.srv, sid));
      const dt = Date.now() - t0;
      assert.equal(g.status, 200);
      assert.equal(g.text, "2");
      assert.ok(dt >= 800, `GET answered after ${dt} ms`);
      assert.equal((await request(pollUrl(ctx.srv, sid), { method: "POST", body: "3" })).status, 200);
      await closePolling(ctx.srv, sid);
    });

    test("an idle websocket outlives the keep-alive timeout", async () => {
      const { client } = await ctx.wsOpen();
      assert.equal(await client.next(3000), "2"); // ~1000 ms later
      client.send("3");
      client.send("4alive");
      assert.equal(await client.nextNonPing(), "4alive");
      await client.close();
    });
  },
);

// ---------------------------------------------------------------------------------------------

group("--path /custom/ --max-payload 1000", [...HB, "--path", "/custom/", "--max-payload", "1000"], (ctx) => {
  const custom = (q) => eioUrl(ctx.srv, q, { path: "/custom/" });

  test("the handshake is served at the custom path with the custom maxPayload", async () => {
    const r = await request(custom({ EIO: "4", transport: "polling" }));
    assert.equal(r.status, 200);
    const open = JSON.parse(r.text.slice(1));
    assert.equal(open.maxPayload, 1000);
    assert.deepEqual(open.upgrades, ["websocket"]);
    const p = await request(custom({ EIO: "4", transport: "polling", sid: open.sid }), { method: "POST", body: "1" });
    assert.equal(p.status, 200);
  });

  test("/engine.io/ is not served", async () => {
    const r = await request(pollUrl(ctx.srv));
    assert.notEqual(r.status, 200);
    assert.ok(!r.text.startsWith("0{"));
  });

  test("POST of 1000 bytes is accepted, 1001 → 413 and the session closed", async () => {
    const open = JSON.parse((await request(custom({ EIO: "4", transport: "polling" }))).text.slice(1));
    const q = { EIO: "4", transport: "polling", sid: open.sid };
    const ok = "4" + "x".repeat(999);
    assert.equal((await request(custom(q), { method: "POST", body: ok })).status, 200);
    const g = await request(custom(q));
    assert.deepEqual(withoutPings(g.text), [ok]);
    const big = await request(custom(q), { method: "POST", body: "4" + "x".repeat(1000) });
    assert.equal(big.status, 413);
    assert.equal((await request(custom(q))).status, 400);
  });

  test("websocket at the custom path works; at /engine.io/ it is refused", async () => {
    const c = ctx.ws(`${ctx.srv.wsUrl}/custom/?EIO=4&transport=websocket`);
    const open = JSON.parse((await c.next()).slice(1));
    assert.equal(open.maxPayload, 1000);
    c.send("4hey");
    assert.equal(await c.nextNonPing(), "4hey");
    await c.close();
    const bad = ctx.ws(wsUrl(ctx.srv));
    await bad.waitClosed(5000);
    assert.equal(bad.queue.length, 0);
  });
});

// ---------------------------------------------------------------------------------------------

group("--upgrade-timeout 300", ["--upgrade-timeout", "300", "--ping-interval", "5000", "--ping-timeout", "5000"], (ctx) => {
  async function pollingStillWorks(sid) {
    assert.equal((await request(pollUrl(ctx.srv, sid), { method: "POST", body: "4still" })).status, 200);
    const seen = [];
    for (let i = 0; i < 3 && !seen.includes("4still"); i++) {
      const g = await request(pollUrl(ctx.srv, sid), { timeoutMs: 3000 });
      assert.equal(g.status, 200, `GET after a timed out upgrade → ${g.status} ${g.text}`);
      seen.push(...withoutPings(g.text));
    }
    assert.deepEqual(
      seen.filter((p) => p !== "6"),
      ["4still"],
    );
    await closePolling(ctx.srv, sid);
  }

  test("a probe never completed with 5 is dropped after the upgrade timeout", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const c = ctx.ws(wsUrl(ctx.srv, sid));
    await withTimeout(c.opened, 5000, "websocket open");
    c.send("2probe");
    assert.equal(await c.next(), "3probe");
    const t0 = Date.now();
    await c.waitClosed(3000);
    const dt = Date.now() - t0;
    assert.ok(dt >= 200, `probe websocket closed after ${dt} ms`);
    await pollingStillWorks(sid);
  });

  test("an upgrade websocket that never probes is dropped too", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const c = ctx.ws(wsUrl(ctx.srv, sid));
    await withTimeout(c.opened, 5000, "websocket open");
    await c.waitClosed(3000);
    await pollingStillWorks(sid);
  });
});

// ---------------------------------------------------------------------------------------------

group("WebSocket framing", HB, (ctx) => {
  test("handshake with Connection: keep-alive, Upgrade and mixed-case tokens is accepted", async () => {
    const c = await ctx.raw();
    const key = Buffer.alloc(16, 7).toString("base64");
    c.write(
      `GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n` +
        `Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const r = await c.readResponse();
    assert.equal(r.status, 101);
    const open = await c.readFrame();
    assert.ok(open.payload.toString().startsWith("0{"));
    c.destroy();
  });

  for (const [name, headers] of [
    ["a wrong Sec-WebSocket-Version", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 8\r\n"],
    ["no Sec-WebSocket-Key", "Sec-WebSocket-Version: 13\r\n"],
  ]) {
    test(`handshake with ${name} is refused`, async () => {
      const c = await ctx.raw();
      c.write(
        `GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\n${headers}\r\n`,
      );
      const r = await c.responseOrClose(5000);
      if (r) assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
      c.destroy();
      await assertAlive(ctx.srv);
    });
  }

  test("900 KB binary and text messages over websocket", async () => {
    const { client } = await ctx.wsOpen({ autoPong: true });
    const big = Buffer.alloc(900000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 255;
    client.send(big);
    const got = await client.next(10000);
    assert.ok(Buffer.isBuffer(got) && got.equals(big), "binary intact");
    const text = "4" + "é".repeat(450000 - 1);
    client.send(text);
    assert.equal(await client.next(10000), text);
    await client.close();
  });

  test("1000 frames in one TCP write are all echoed in order", async () => {
    const conn = await rawSession(ctx);
    const frames = [];
    for (let i = 0; i < 1000; i++) frames.push(i % 3 ? wsFrame(0x1, Buffer.from(`4n${i}`)) : wsFrame(0x2, Buffer.from([i & 255, i >> 8])));
    conn.write(Buffer.concat(frames));
    for (let i = 0; i < 1000; i++) {
      const f = await nextDataFrame(conn);
      if (i % 3) {
        assert.equal(f.opcode, 0x1);
        assert.equal(f.payload.toString(), `4n${i}`);
      } else {
        assert.equal(f.opcode, 0x2);
        assert.deepEqual([...f.payload], [i & 255, i >> 8]);
      }
    }
    conn.destroy();
  });

  test("a fragmented text message is echoed whole", async () => {
    const { client } = await ctx.wsOpen();
    client.ws.send("4frag", { fin: false });
    client.ws.send("mented € ", { fin: false });
    client.ws.send("😀", { fin: true });
    assert.equal(await client.nextNonPing(), "4fragmented € 😀");
    await client.close();
  });

  test("a fragmented binary message is echoed whole", async () => {
    const { client } = await ctx.wsOpen();
    client.ws.send(Buffer.from([1, 2]), { fin: false, binary: true });
    client.ws.send(Buffer.from([]), { fin: false, binary: true });
    client.ws.send(Buffer.from([3, 4, 5]), { fin: true, binary: true });
    const m = await client.nextNonPing();
    assert.ok(Buffer.isBuffer(m));
    assert.deepEqual([...m], [1, 2, 3, 4, 5]);
    await client.close();
  });

  test("a control ping is answered with a pong carrying the same data", async () => {
    const { client } = await ctx.wsOpen();
    const pong = new Promise((resolve) => client.ws.once("pong", resolve));
    client.ws.ping(Buffer.from("abc"));
    const data = await withTimeout(pong, 3000, "pong");
    assert.equal(data.toString(), "abc");
    await client.close();
  });

  test("the close handshake echoes the client's status code", async () => {
    const { client } = await ctx.wsOpen();
    client.ws.close(1000, "bye");
    const info = await client.waitClosed(3000);
    assert.equal(info.code, 1000);
  });

  test("a raw text frame split over many TCP writes, and an empty binary frame", async () => {
    const conn = await rawSession(ctx);
    await conn.trickle(wsFrame(0x1, Buffer.from("4slow € 😀")));
    let f = await nextDataFrame(conn);
    assert.equal(f.opcode, 0x1);
    assert.equal(f.payload.toString(), "4slow € 😀");
    conn.write(wsFrame(0x2, Buffer.alloc(0)));
    f = await nextDataFrame(conn);
    assert.equal(f.opcode, 0x2);
    assert.equal(f.payload.length, 0);
    conn.destroy();
  });

  test("a ping between the fragments of a message", async () => {
    const conn = await rawSession(ctx);
    conn.write(
      Buffer.concat([
        wsFrame(0x1, Buffer.from("4ab"), { fin: false }),
        wsFrame(0x9, Buffer.from("p")),
        wsFrame(0x0, Buffer.from("cd"), { fin: true }),
      ]),
    );
    const pong = await nextDataFrame(conn);
    assert.equal(pong.opcode, 0xa);
    assert.equal(pong.payload.toString(), "p");
    const msg = await nextDataFrame(conn);
    assert.equal(msg.opcode, 0x1);
    assert.equal(msg.payload.toString(), "4abcd");
    conn.destroy();
  });

  for (const [name, frame, codes] of [
    ["an unmasked frame", () => wsFrame(0x1, Buffer.from("4hi"), { mask: false }), [1002]],
    ["RSV1 without an extension", () => wsFrame(0x1, Buffer.from("4hi"), { rsv: 4 }), [1002]],
    ["an unknown opcode", () => wsFrame(0x3, Buffer.from("4hi")), [1002]],
    ["a continuation without a start", () => wsFrame(0x0, Buffer.from("4hi")), [1002]],
    ["a fragmented ping", () => wsFrame(0x9, Buffer.from("x"), { fin: false }), [1002]],
    ["a ping over 125 bytes", () => wsFrame(0x9, Buffer.alloc(126, 1)), [1002]],
    ["invalid UTF-8 in a text frame", () => wsFrame(0x1, Buffer.from([0x34, 0xc3, 0x28])), [1007]],
    ["a declared length of 2^62", () => wsFrame(0x2, Buffer.alloc(0), { len: 2 ** 62 }), [1009, 1002]],
    ["a text frame while a binary message is unfinished", () =>
      Buffer.concat([wsFrame(0x2, Buffer.from([1]), { fin: false }), wsFrame(0x1, Buffer.from("4x"))]), [1002]],
  ]) {
    test(`${name} closes the connection`, async () => {
      const conn = await rawSession(ctx);
      conn.write(frame());
      await expectWsClose(conn, codes, name);
      await assertAlive(ctx.srv);
    });
  }

  test("a close frame with an invalid code is answered with 1002", async () => {
    const conn = await rawSession(ctx);
    const p = Buffer.alloc(2);
    p.writeUInt16BE(1005, 0); // must never be sent on the wire
    conn.write(wsFrame(0x8, p));
    await expectWsClose(conn, [1002], "close 1005");
  });
});

// ---------------------------------------------------------------------------------------------

group("isolation", ["--ping-interval", "5000", "--ping-timeout", "5000"], (ctx) => {
  test("50 polling and 50 websocket sessions each get only their own echoes", async () => {
    const tasks = [];
    for (let i = 0; i < 50; i++) {
      tasks.push(
        (async () => {
          const { sid } = await pollingHandshake(ctx.srv);
          const mine = [`4p${i}-a`, `4p${i}-b`, `b${Buffer.from(`p${i}`).toString("base64")}`];
          assert.equal((await request(pollUrl(ctx.srv, sid), { method: "POST", body: mine.join("\x1e") })).status, 200);
          const g = await request(pollUrl(ctx.srv, sid));
          assert.deepEqual(withoutPings(g.text), mine);
          await closePolling(ctx.srv, sid);
        })(),
      );
      tasks.push(
        (async () => {
          const { client } = await ctx.wsOpen();
          client.send(`4w${i}`);
          client.send(Buffer.from(`w${i}`));
          assert.equal(await client.nextNonPing(), `4w${i}`);
          assert.equal((await client.nextNonPing()).toString(), `w${i}`);
          await client.close();
        })(),
      );
    }
    await Promise.all(tasks);
  });
});

// ---------------------------------------------------------------------------------------------

describe("SIGTERM with everything still open", () => {
  test("sessions of every kind and half-sent requests are torn down, exit 0, no leaks", async () => {
    const srv = await startEcho(["--ping-interval", "20000", "--ping-timeout", "20000"]);
    const clients = [];
    const raws = [];
    try {
      // polling session with a parked GET
      const a = await pollingHandshake(srv);
      let getReq;
      const parked = request(pollUrl(srv, a.sid), { onRequest: (r) => (getReq = r) });
      parked.catch(() => {});
      // polling session with echoes buffered and nobody polling
      const b = await pollingHandshake(srv);
      assert.equal((await request(pollUrl(srv, b.sid), { method: "POST", body: `4x${"\x1e"}bAQID` })).status, 200);
      // websocket session with unread echoes
      const ws = new WsClient(wsUrl(srv));
      clients.push(ws);
      await withTimeout(ws.opened, 5000, "websocket open");
      for (let i = 0; i < 100; i++) ws.send(`4m${i}`);
      // upgraded session
      const c = await pollingHandshake(srv);
      const up = new WsClient(wsUrl(srv, c.sid));
      clients.push(up);
      await withTimeout(up.opened, 5000, "websocket open");
      up.send("2probe");
      assert.equal(await up.next(), "3probe");
      up.send("5");
      up.send("4sync");
      assert.equal(await up.next(), "4sync");
      // session in the middle of an upgrade
      const d = await pollingHandshake(srv);
      const mid = new WsClient(wsUrl(srv, d.sid));
      clients.push(mid);
      await withTimeout(mid.opened, 5000, "websocket open");
      mid.send("2probe");
      assert.equal(await mid.next(), "3probe");
      // a half-sent request head, a half-sent body, an idle keep-alive connection
      const r1 = new RawConn(srv.port);
      const r2 = new RawConn(srv.port);
      const r3 = new RawConn(srv.port);
      raws.push(r1, r2, r3);
      await Promise.all(raws.map((r) => r.connected));
      r1.write("GET /stats HTTP/1.1\r\nHost: x\r\n");
      r2.write(`POST /engine.io/?EIO=4&transport=polling&sid=${b.sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n4abc`);
      r3.write("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
      assert.equal((await r3.readResponse()).status, 200);
      await waitUntil(async () => (await getStats(srv)).sessions === 5, { timeoutMs: 3000, what: "5 sessions" });
      assert.ok(getReq, "GET sent");

      await srv.stop({ timeoutMs: 5000 });

      // every client learns about it
      await withTimeout(parked.then(() => {}, () => {}), 5000, "the parked GET to end");
      for (const cl of clients) await cl.waitClosed(5000);
      for (const r of raws) await r.waitClosed(5000);
    } finally {
      for (const cl of clients) cl.terminate();
      for (const r of raws) r.destroy();
      if (srv.process.exitCode === null && srv.process.signalCode === null) await srv.stop().catch(() => {});
    }
  });
});
