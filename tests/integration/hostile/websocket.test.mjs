// Hostile RFC 6455 input against eio_echo on /engine.io/?EIO=4&transport=websocket:
// bad upgrades, framing violations, UTF-8, size limits, the close handshake, ping/pong.
// Frames are written by hand (masked with random keys unless the test is about masking)
// and the server's frames parsed by hand. After each group the healthy session must still
// echo and /stats must return to baseline (the failed sessions are gone).
import { it } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import {
  Conn,
  OP,
  WS_PATH,
  acceptFor,
  binary,
  closeFrame,
  cont,
  expectHttpError,
  expectWsClose,
  frame,
  handshakeRequest,
  ping,
  pong,
  readData,
  hostileFile,
  sleep,
  text,
  waitUntil,
  stats,
} from "./util.mjs";
import { wsOpen } from "./util.mjs";

const WS_MAX = 4096;
let port;
const T = { timeout: 15000 };
const group = hostileFile(
  ["--ws-max-message", String(WS_MAX), "--ping-interval", "60000", "--ping-timeout", "30000"],
  (env) => (port = env.port),
  T,
);

/** Opens a session, writes bytes (a Buffer or an array of Buffers written separately), expects close `code`. */
async function expectClose(bytes, code) {
  const { conn } = await wsOpen(port);
  try {
    if (Array.isArray(bytes)) for (const b of bytes) conn.write(b);
    else conn.write(bytes);
    return await expectWsClose(conn, code);
  } finally {
    conn.destroy();
  }
}

/** Opens a session, writes bytes, expects one data frame back; returns it. The session is closed cleanly after. */
async function expectEcho(bytes) {
  const { conn } = await wsOpen(port);
  try {
    if (Array.isArray(bytes)) for (const b of bytes) conn.write(b);
    else conn.write(bytes);
    const f = await readData(conn);
    conn.write(closeFrame(1000));
    await expectWsClose(conn, 1000);
    return f;
  } finally {
    conn.destroy();
  }
}

const b = (...parts) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, "latin1"))));

group("opening handshake", () => {
  it("a valid upgrade: 101 with the right headers, then the open packet, then echo", T, async () => {
    const { conn, open, res } = await wsOpen(port);
    assert.match(res.headers.upgrade ?? "", /^websocket$/i);
    assert.match(res.headers.connection ?? "", /upgrade/i);
    assert.equal(typeof open.pingInterval, "number");
    assert.equal(typeof open.pingTimeout, "number");
    assert.ok(Array.isArray(open.upgrades));
    conn.write(text("4hi"));
    const f = await readData(conn);
    assert.deepEqual([f.opcode, f.fin, f.text], [OP.TEXT, true, "4hi"]);
    conn.write(closeFrame(1000));
    await expectWsClose(conn, 1000);
    conn.destroy();
  });

  it("frames sent in the same write as the upgrade request are processed", T, async () => {
    const { conn } = await wsOpen(port, { after: b(text("4early"), text("4second")) });
    assert.equal((await readData(conn)).text, "4early");
    assert.equal((await readData(conn)).text, "4second");
    conn.write(closeFrame(1000));
    await expectWsClose(conn, 1000);
    conn.destroy();
  });

  it("missing Sec-WebSocket-Key → 400", T, async () => {
    await expectHttpError(port, handshakeRequest({ omit: ["Sec-WebSocket-Key"] }).raw, 400);
  });

  const badKeys = {
    "not base64": "!!!!!!!!!!!!!!!!!!!!!!==",
    "too short": "abc",
    "base64 of 15 bytes": crypto.randomBytes(15).toString("base64"),
    "base64 of 17 bytes": crypto.randomBytes(17).toString("base64"),
    "empty": "",
  };
  for (const [name, key] of Object.entries(badKeys)) {
    it(`bad Sec-WebSocket-Key (${name}) → 400`, T, async () => {
      await expectHttpError(port, handshakeRequest({ key }).raw, 400);
    });
  }

  it("Sec-WebSocket-Version: 8 → 426 with Sec-WebSocket-Version: 13", T, async () => {
    const res = await expectHttpError(port, handshakeRequest({ version: "8" }).raw, 426);
    assert.equal(res.headers["sec-websocket-version"], "13");
  });

  it("missing Sec-WebSocket-Version → an HTTP error, not 101", T, async () => {
    const res = await expectHttpError(port, handshakeRequest({ omit: ["Sec-WebSocket-Version"] }).raw, [400, 426]);
    if (res.status === 426) assert.equal(res.headers["sec-websocket-version"], "13");
  });

  it("POST with upgrade headers → an HTTP 4xx error, not 101", T, async () => {
    const raw = handshakeRequest({ method: "POST", extra: [["Content-Length", "0"]] }).raw;
    const c = await Conn.connect(port);
    c.write(raw);
    const res = await c.readResponse();
    assert.ok(res.status >= 400 && res.status < 500, `got ${res.status}`);
    c.destroy();
  });

  it("upgrade over HTTP/1.0 → an HTTP 4xx error, not 101", T, async () => {
    const c = await Conn.connect(port);
    c.write(handshakeRequest({ httpVersion: "HTTP/1.0" }).raw);
    const res = await c.readResponse();
    assert.ok(res.status >= 400 && res.status < 500, `got ${res.status}`);
    c.destroy();
  });

  it("websocket transport without Upgrade headers → an HTTP 4xx error, not 101", T, async () => {
    const c = await Conn.connect(port);
    c.write(handshakeRequest({ omit: ["Upgrade", "Connection"] }).raw);
    const res = await c.readResponse();
    assert.ok(res.status >= 400 && res.status < 500, `got ${res.status}`);
    c.destroy();
  });

  it("upgrade on an unknown path → 404", T, async () => {
    await expectHttpError(port, handshakeRequest({ path: "/nope" }).raw, 404);
  });
});

group("framing violations → 1002", () => {
  it("unmasked client frame", T, async () => {
    await expectClose(text("4hello", { mask: false }), 1002);
  });
  for (const rsv of [4, 2, 1]) {
    it(`RSV bits ${rsv.toString(2).padStart(3, "0")} set`, T, async () => {
      await expectClose(text("4hello", { rsv }), 1002);
    });
  }
  it("RSV1 on a control frame", T, async () => {
    await expectClose(ping("x", { rsv: 4 }), 1002);
  });
  for (const op of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
    it(`unknown opcode 0x${op.toString(16)}`, T, async () => {
      await expectClose(frame({ opcode: op, payload: "4x" }), 1002);
    });
  }
  it("ping with a 126-byte payload", T, async () => {
    await expectClose(ping(Buffer.alloc(126, 0x61)), 1002);
  });
  it("pong with a 126-byte payload", T, async () => {
    await expectClose(pong(Buffer.alloc(126, 0x61)), 1002);
  });
  it("close with a 126-byte payload", T, async () => {
    const p = Buffer.alloc(126, 0x61);
    p.writeUInt16BE(1000, 0);
    await expectClose(frame({ opcode: OP.CLOSE, payload: p }), 1002);
  });
  it("control frame with a small payload in the 16-bit length form", T, async () => {
    await expectClose(ping("abc", { lenMode: 16 }), 1002);
  });
  it("fragmented ping (FIN=0)", T, async () => {
    await expectClose(ping("x", { fin: false }), 1002);
  });
  it("fragmented close (FIN=0)", T, async () => {
    await expectClose(frame({ opcode: OP.CLOSE, fin: false, payload: Buffer.from([0x03, 0xe8]) }), 1002);
  });
  it("continuation without a start (FIN=1)", T, async () => {
    await expectClose(cont("4x"), 1002);
  });
  it("continuation without a start (FIN=0)", T, async () => {
    await expectClose(cont("4x", { fin: false }), 1002);
  });
  it("continuation after a complete message", T, async () => {
    const { before } = await expectClose(b(text("4done"), cont("more")), 1002);
    assert.deepEqual(before.map((f) => f.text), ["4done"]);
  });
  it("new text frame while a fragmented message is open", T, async () => {
    await expectClose(b(text("4a", { fin: false }), text("4b")), 1002);
  });
  it("new binary frame while a fragmented text message is open", T, async () => {
    await expectClose(b(text("4a", { fin: false }), binary("b")), 1002);
  });
  it("non-minimal length: 5 bytes in the 16-bit form", T, async () => {
    await expectClose(text("4hell", { lenMode: 16 }), 1002);
  });
  it("non-minimal length: 5 bytes in the 64-bit form", T, async () => {
    await expectClose(text("4hell", { lenMode: 64 }), 1002);
  });
  it("non-minimal length: 200 bytes in the 64-bit form", T, async () => {
    await expectClose(text("4" + "x".repeat(199), { lenMode: 64 }), 1002);
  });
  it("64-bit length with the most significant bit set", T, async () => {
    await expectClose(frame({ opcode: OP.TEXT, declaredLen: 5, lenMode: 64, topBit: true }), 1002);
  });
  it("a violation split byte by byte across TCP writes", T, async () => {
    const bytes = text("4hello", { rsv: 2 });
    await expectClose([...bytes].map((x) => Buffer.from([x])), 1002);
  });
});

group("UTF-8", () => {
  const invalid = {
    "0xFF byte in one frame": [text(b("4abc\xff"))],
    "overlong encoding (C0 AF)": [text(b("4\xc0\xaf"))],
    "UTF-16 surrogate (ED A0 80)": [text(b("4\xed\xa0\x80"))],
    "code point above U+10FFFF (F4 90 80 80)": [text(b("4\xf4\x90\x80\x80"))],
    "truncated sequence at the end of a single frame": [text(b("4abc\xe2\x82"))],
    "invalid across fragments (F0 9F | 98 | 41)": [text(b("4\xf0\x9f"), { fin: false }), cont(b("\x98"), { fin: false }), cont(b("\x41"))],
    "invalid in the middle fragment": [text(b("4ok"), { fin: false }), cont(b("\xfe"), { fin: false }), cont(b("fine"))],
    "invalid only at the end of the final fragment": [text(b("4hello"), { fin: false }), cont(b(" wor"), { fin: false }), cont(b("ld\xf0\x9f"))],
  };
  for (const [name, frames] of Object.entries(invalid)) {
    it(`${name} → 1007`, T, async () => {
      await expectClose(b(...frames), 1007);
    });
  }
  it("valid multi-byte characters split across fragments are delivered", T, async () => {
    const f = await expectEcho(b(text(b("4\xe2\x82"), { fin: false }), cont(b("\xac \xf0\x9f"), { fin: false }), cont(b("\x98\x80"))));
    assert.equal(f.opcode, OP.TEXT);
    assert.equal(f.text, "4€ 😀");
  });
  it("binary messages are not UTF-8 checked", T, async () => {
    const f = await expectEcho(binary(Buffer.from([0xff, 0xfe, 0xc0, 0xaf])));
    assert.equal(f.opcode, OP.BINARY);
    assert.deepEqual([...f.payload], [0xff, 0xfe, 0xc0, 0xaf]);
  });
});

group("size limits (ws-max-message 4096)", () => {
  it("a message of exactly ws-max-message bytes is echoed", T, async () => {
    const msg = "4" + "y".repeat(WS_MAX - 1);
    const f = await expectEcho(text(msg));
    assert.equal(f.text, msg);
  });
  it("a fragmented message of exactly ws-max-message bytes is echoed as one frame", T, async () => {
    const f = await expectEcho(b(text("4" + "a".repeat(2047), { fin: false }), cont("b".repeat(2000), { fin: false }), cont("c".repeat(48))));
    assert.equal(f.fin, true);
    assert.equal(f.payload.length, WS_MAX);
    assert.equal(f.text, "4" + "a".repeat(2047) + "b".repeat(2000) + "c".repeat(48));
  });
  it("declared length ws-max-message+1 in the header (no payload sent) → 1009", T, async () => {
    await expectClose(frame({ opcode: OP.TEXT, declaredLen: WS_MAX + 1 }), 1009);
  });
  it("declared 64-bit length 2^40 (no payload sent) → 1009", T, async () => {
    await expectClose(frame({ opcode: OP.BINARY, declaredLen: 2 ** 40 }), 1009);
  });
  it("fragmented message whose total grows over ws-max-message → 1009", T, async () => {
    await expectClose(
      b(text("4" + "a".repeat(1999), { fin: false }), cont("b".repeat(2000), { fin: false }), cont("c".repeat(200), { fin: false })),
      1009,
    );
  });
  it("many 1-byte fragments growing over ws-max-message → 1009", T, async () => {
    const frames = [text("4", { fin: false })];
    for (let i = 0; i < WS_MAX + 10; i++) frames.push(cont("z", { fin: false }));
    await expectClose(b(...frames), 1009);
  });
});

group("close handshake", () => {
  it("close 1000 is echoed with 1000, then the TCP connection closes", T, async () => {
    const { close } = await expectClose(closeFrame(1000, "bye"), 1000);
    assert.ok(close);
  });
  it("close with an empty payload is answered with a close frame (empty or 1000)", T, async () => {
    const { close } = await expectClose(closeFrame(null), [null, 1000]);
    assert.ok(close.payload.length === 0 || close.code === 1000);
  });
  for (const code of [1001, 3000, 4999]) {
    it(`valid close code ${code} → a clean close (${code} or 1000)`, T, async () => {
      await expectClose(closeFrame(code), [code, 1000]);
    });
  }
  it("close with a 123-byte reason (the longest possible) → clean close", T, async () => {
    await expectClose(closeFrame(1000, "r".repeat(123)), 1000);
  });
  it("data after the close frame is ignored", T, async () => {
    const { before } = await expectClose(b(closeFrame(1000), text("4after")), 1000);
    assert.deepEqual(before, [], "nothing may be echoed after the client's close frame");
  });
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]) {
    it(`close code ${code} → 1002`, T, async () => {
      await expectClose(closeFrame(code), 1002);
    });
  }
  it("close with a 1-byte payload → 1002", T, async () => {
    await expectClose(frame({ opcode: OP.CLOSE, payload: Buffer.from([0x03]) }), 1002);
  });
  it("close with an invalid UTF-8 reason → 1007", T, async () => {
    await expectClose(closeFrame(1000, b("bad \xff reason")), 1007);
  });
  it("close with a truncated UTF-8 reason → 1007", T, async () => {
    await expectClose(closeFrame(1000, b("ab\xe2\x82")), 1007);
  });
});

group("ping / pong", () => {
  async function pingPong(payloads) {
    const { conn } = await wsOpen(port);
    try {
      conn.write(b(...payloads.map((p) => ping(p))));
      for (const p of payloads) {
        const f = await conn.readFrame();
        assert.ok(f);
        assert.equal(f.opcode, OP.PONG);
        assert.equal(f.fin, true);
        assert.deepEqual(f.payload, Buffer.from(p));
      }
      conn.write(closeFrame(1000));
      await expectWsClose(conn, 1000);
    } finally {
      conn.destroy();
    }
  }
  it("ping → pong with the same payload", T, async () => {
    await pingPong(["hello"]);
  });
  it("empty ping and 125-byte ping", T, async () => {
    await pingPong(["", "p".repeat(125)]);
  });
  it("binary ping payload", T, async () => {
    await pingPong([Buffer.from([0, 0xff, 0x80, 0x0d, 0x0a])]);
  });
  it("200 pings in one write are all answered in order", T, async () => {
    await pingPong(Array.from({ length: 200 }, (_, i) => `p${i}`));
  });
  it("pings interleaved between fragments: pongs, then the whole message", T, async () => {
    const { conn } = await wsOpen(port);
    conn.write(b(text("4", { fin: false }), ping("p1"), cont("hel", { fin: false }), ping("p2"), cont("lo")));
    const frames = [await conn.readFrame(), await conn.readFrame(), await conn.readFrame()];
    const pongs = frames.filter((f) => f.opcode === OP.PONG).map((f) => f.text);
    const data = frames.filter((f) => f.opcode !== OP.PONG);
    assert.deepEqual(pongs, ["p1", "p2"]);
    assert.equal(data.length, 1);
    assert.deepEqual([data[0].opcode, data[0].fin, data[0].text], [OP.TEXT, true, "4hello"]);
    conn.write(closeFrame(1000));
    await expectWsClose(conn, 1000);
    conn.destroy();
  });
  it("fragmented text \"4\" + \"hel\" + \"lo\" → one frame \"4hello\"", T, async () => {
    const f = await expectEcho(b(text("4", { fin: false }), cont("hel", { fin: false }), cont("lo")));
    assert.deepEqual([f.opcode, f.fin, f.text], [OP.TEXT, true, "4hello"]);
  });
  it("an unsolicited pong is ignored", T, async () => {
    const f = await expectEcho(b(pong("unsolicited"), text("4after-pong")));
    assert.equal(f.text, "4after-pong");
  });
  it("a close interleaved in a fragmented message closes cleanly", T, async () => {
    const { before } = await expectClose(b(text("4part", { fin: false }), closeFrame(1000)), 1000);
    assert.deepEqual(before, []);
  });
});

group("transport oddities", () => {
  it("a frame written one byte at a time is echoed", T, async () => {
    const bytes = text("4slow-frame");
    const f = await expectEcho([...bytes].map((x) => Buffer.from([x])));
    assert.equal(f.text, "4slow-frame");
  });
  it("many frames in one write are echoed in order", T, async () => {
    const { conn } = await wsOpen(port);
    conn.write(b(...Array.from({ length: 50 }, (_, i) => text(`4m${i}`))));
    for (let i = 0; i < 50; i++) assert.equal((await readData(conn)).text, `4m${i}`);
    conn.write(closeFrame(1000));
    await expectWsClose(conn, 1000);
    conn.destroy();
  });
  it("a client that disconnects mid-frame leaves no session behind", T, async () => {
    const before = await stats(port);
    const conns = [];
    for (let i = 0; i < 10; i++) {
      const { conn } = await wsOpen(port);
      conn.write(frame({ opcode: OP.TEXT, declaredLen: 100 }).subarray(0, 8));
      conns.push(conn);
    }
    await waitUntil(async () => (await stats(port)).sessions >= before.sessions + 10, { what: "10 more sessions" });
    conns.forEach((c, i) => (i % 2 ? c.destroy() : c.socket.resetAndDestroy()));
    await waitUntil(async () => (await stats(port)).sessions === before.sessions, { what: "the sessions to be gone" });
  });
  it("a client that disconnects without a close frame leaves no session behind", T, async () => {
    const { conn } = await wsOpen(port);
    conn.write(text("4x"));
    await readData(conn);
    conn.destroy();
    await waitUntil(async () => (await stats(port)).sessions === 1, { what: "the session to be gone" });
  });
  it("a half-closed client (FIN after a message) gets its echo or a close, and the session ends", T, async () => {
    const { conn } = await wsOpen(port);
    conn.socket.end(text("4bye"));
    await conn.waitClosed({ timeoutMs: 3000 });
    conn.destroy();
    await waitUntil(async () => (await stats(port)).sessions === 1, { what: "the session to be gone" });
  });
});

void sleep;
void acceptFor;
void WS_PATH;
