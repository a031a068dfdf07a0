// Hostile Engine.IO-level input against eio_echo: bad session ids, malformed polling
// payloads, invalid packets over WebSocket, the payload limit, and clients that stop
// answering pings. After each group the healthy session must still echo and /stats
// must return to baseline.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "../lib/server.mjs";
import {
  Conn,
  Healthy,
  OP,
  POLL_PATH,
  WS_PATH,
  binary,
  buildRequest,
  closeFrame,
  handshakeRequest,
  expectWsClose,
  frame,
  readData,
  request,
  hostileFile,
  sleep,
  stats,
  text,
  waitUntil,
  wsOpen,
  pollOpen,
  pollPost,
  pollGet,
  pollClose,
  pollPath,
} from "./util.mjs";

let port;
const T = { timeout: 20000 };
const group = hostileFile(["--ping-interval", "60000", "--ping-timeout", "30000"], (env) => (port = env.port), T);

async function withSession(fn) {
  const sid = await pollOpen(port);
  try {
    return await fn(sid);
  } finally {
    await pollClose(port, sid);
  }
}

function assertEioError(res, code) {
  assert.equal(res.status, 400, `expected 400, got ${res.status}: ${res.text}`);
  if (code !== undefined) {
    let body;
    try {
      body = JSON.parse(res.text);
    } catch {
      assert.fail(`400 body is not JSON: ${JSON.stringify(res.text)}`);
    }
    assert.equal(body.code, code, `error body ${res.text}`);
    assert.equal(typeof body.message, "string");
  }
}

group("polling: unknown sessions and bad handshakes", () => {
  it("GET with an unknown sid → 400 {code:1}", T, async () => {
    assertEioError(await pollGet(port, "no-such-sid"), 1);
  });
  it("POST with an unknown sid → 400 {code:1}", T, async () => {
    assertEioError(await pollPost(port, "no-such-sid", "4hello"), 1);
  });
  it("sid with percent-encoded NUL and 0xFF → 400 {code:1}", T, async () => {
    assertEioError(await request(port, { path: `${POLL_PATH}&sid=%00%ff` }), 1);
  });
  it("a 4000-character sid → 400 {code:1}", T, async () => {
    assertEioError(await pollGet(port, "s".repeat(4000)), 1);
  });
  it("a sid that was valid but is closed → 400 {code:1}", T, async () => {
    const sid = await pollOpen(port);
    const r = await pollPost(port, sid, "1");
    assert.equal(r.status, 200);
    await waitUntil(async () => (await pollGet(port, sid)).status === 400, { what: "the closed sid to be rejected" });
    assertEioError(await pollGet(port, sid), 1);
  });
  it("the sid of a WebSocket session used for polling → 400", T, async () => {
    const { conn, open } = await wsOpen(port);
    try {
      const res = await pollGet(port, open.sid);
      assert.equal(res.status, 400, `got ${res.status}: ${res.text}`);
    } finally {
      conn.destroy();
    }
  });
  it("unknown transport → 400", T, async () => {
    assertEioError(await request(port, { path: "/engine.io/?EIO=4&transport=carrier-pigeon" }));
  });
  it("EIO=3 → 400", T, async () => {
    assertEioError(await request(port, { path: "/engine.io/?EIO=3&transport=polling" }));
  });
  it("missing EIO → 400", T, async () => {
    assertEioError(await request(port, { path: "/engine.io/?transport=polling" }));
  });
  it("bad percent-encoding in the query → 400", T, async () => {
    const res = await request(port, { path: "/engine.io/?EIO=4&transport=polling&sid=%zz" });
    assert.equal(res.status, 400);
  });
  it("WebSocket upgrade with an unknown sid → 400 {code:1}, not 101", T, async () => {
    const c = await Conn.connect(port);
    try {
      c.write(handshakeRequest({ path: `${WS_PATH}&sid=no-such-sid` }).raw);
      assertEioError(await c.readResponse(), 1);
    } finally {
      c.destroy();
    }
  });
  it("two overlapping GET polls on one sid: the second → 400 (engine.io: overlap closes the session)", T, async () => {
    await withSession(async (sid) => {
      const c1 = await Conn.connect(port);
      try {
        c1.write(buildRequest({ path: pollPath(sid) }));
        await sleep(100);
        const r2 = await pollGet(port, sid);
        assert.equal(r2.status, 400, `second concurrent poll answered ${r2.status}: ${r2.text}`);
      } finally {
        c1.destroy();
      }
    });
  });
  it("garbage on a WebSocket upgrading a polling session closes that WebSocket", T, async () => {
    await withSession(async (sid) => {
      const c = await Conn.connect(port);
      try {
        c.write(handshakeRequest({ path: `${WS_PATH}&sid=${encodeURIComponent(sid)}` }).raw);
        const res = await c.readResponse();
        assert.equal(res.status, 101);
        c.write(text("abc"));
        const { before } = await expectWsClose(c, "any-or-none");
        assert.deepEqual(before.filter((f) => f.opcode === OP.TEXT), []);
      } finally {
        c.destroy();
      }
    });
  });
});

group("polling: malformed POST payloads → 400", () => {
  const cases = {
    "garbage \"abc\"": "abc",
    "unknown packet type \"9x\"": "9x",
    "unknown packet type \"7\"": "7",
    "empty body": "",
    "trailing record separator": "4a\x1e",
    "empty packet between separators": "4a\x1e\x1e4b",
    "valid then invalid packet": "4ok\x1eabc",
    "b + invalid base64 characters": "b!!!!",
    "b + base64 of bad length": "bA",
    "b + only padding": "b====",
    "b + padding in the middle": "bAQ==ID",
  };
  for (const [name, body] of Object.entries(cases)) {
    it(name, T, async () => {
      await withSession(async (sid) => {
        const res = await pollPost(port, sid, body);
        assert.equal(res.status, 400, `POST ${JSON.stringify(body)} answered ${res.status}: ${res.text}`);
      });
    });
  }
});

group("polling: valid edge cases still work", () => {
  it("two packets in one POST come back in one poll", T, async () => {
    await withSession(async (sid) => {
      assert.equal((await pollPost(port, sid, "4hello\x1e4world")).text, "ok");
      const res = await pollGet(port, sid);
      let msgs = res.text.split("\x1e");
      if (msgs.length < 2) msgs = msgs.concat((await pollGet(port, sid)).text.split("\x1e"));
      assert.deepEqual(msgs, ["4hello", "4world"]);
    });
  });
  it("a base64 binary message is echoed as base64", T, async () => {
    await withSession(async (sid) => {
      assert.equal((await pollPost(port, sid, "bAQID")).text, "ok");
      assert.equal((await pollGet(port, sid)).text, "bAQID");
    });
  });
  it("multi-byte UTF-8 is echoed intact", T, async () => {
    await withSession(async (sid) => {
      assert.equal((await pollPost(port, sid, "4héllo €😀")).text, "ok");
      assert.equal((await pollGet(port, sid)).text, "4héllo €😀");
    });
  });
});

group("WebSocket: invalid Engine.IO packets close the session", () => {
  const cases = { "\"abc\"": "abc", "\"9x\"": "9x", "\"7\"": "7", "an empty text frame": "" };
  for (const [name, payload] of Object.entries(cases)) {
    it(`text frame ${name} → the WebSocket is closed`, T, async () => {
      const { conn } = await wsOpen(port);
      try {
        conn.write(text(payload));
        const { before } = await expectWsClose(conn, "any-or-none");
        assert.deepEqual(before.filter((f) => f.opcode === OP.TEXT && f.text !== "2"), [], "nothing may be echoed");
      } finally {
        conn.destroy();
      }
    });
  }
  it("an invalid packet after valid ones: the valid ones are echoed, then close", T, async () => {
    const { conn } = await wsOpen(port);
    try {
      conn.write(Buffer.concat([text("4one"), text("4two"), text("abc"), text("4never")]));
      const { before } = await expectWsClose(conn, "any-or-none");
      assert.deepEqual(before.map((f) => f.text), ["4one", "4two"]);
    } finally {
      conn.destroy();
    }
  });
  it("Engine.IO close packet \"1\" → the WebSocket is closed", T, async () => {
    const { conn } = await wsOpen(port);
    try {
      conn.write(text("1"));
      await expectWsClose(conn, "any-or-none");
    } finally {
      conn.destroy();
    }
  });
  it("binary messages and the empty message \"4\" are echoed (valid)", T, async () => {
    const { conn } = await wsOpen(port);
    try {
      conn.write(Buffer.concat([binary(Buffer.from([1, 2, 3])), text("4")]));
      const f1 = await readData(conn);
      assert.equal(f1.opcode, OP.BINARY);
      assert.deepEqual([...f1.payload], [1, 2, 3]);
      const f2 = await readData(conn);
      assert.deepEqual([f2.opcode, f2.text], [OP.TEXT, "4"]);
      conn.write(closeFrame(1000));
      await expectWsClose(conn, 1000);
    } finally {
      conn.destroy();
    }
  });
});

group("payload limit (default max-payload 1000000)", () => {
  it("a polling POST of exactly 1000000 bytes is accepted and echoed", T, async () => {
    await withSession(async (sid) => {
      const body = "4" + "m".repeat(999999);
      const res = await pollPost(port, sid, body, {}, { timeoutMs: 10000 });
      assert.equal(res.status, 200);
      const got = await pollGet(port, sid, { timeoutMs: 10000 });
      assert.equal(got.text.length, body.length);
      assert.equal(got.text, body);
    });
  });
  it("a polling POST of 1000001 bytes → 413", T, async () => {
    await withSession(async (sid) => {
      const c = await Conn.connect(port);
      try {
        c.write(`POST ${pollPath(sid)} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000001\r\n\r\n`);
        c.write("4" + "m".repeat(1000000));
        const res = await c.readResponse();
        assert.equal(res.status, 413);
        await c.waitClosed();
      } finally {
        c.destroy();
      }
    });
  });
  it("a WebSocket message of exactly 1000000 bytes is echoed (ws-max-message defaults to max-payload)", T, async () => {
    const { conn } = await wsOpen(port);
    try {
      const msg = "4" + "w".repeat(999999);
      conn.write(text(msg));
      const f = await readData(conn, { timeoutMs: 10000 });
      assert.equal(f.payload.length, msg.length);
      assert.equal(f.text, msg);
      conn.write(closeFrame(1000));
      await expectWsClose(conn, 1000);
    } finally {
      conn.destroy();
    }
  });
  it("a WebSocket frame declaring 1000001 bytes → 1009", T, async () => {
    const { conn } = await wsOpen(port);
    try {
      conn.write(frame({ opcode: OP.TEXT, declaredLen: 1000001 }));
      await expectWsClose(conn, 1009);
    } finally {
      conn.destroy();
    }
  });
});

describe("clients that stop answering (separate server, --ping-interval 300 --ping-timeout 300)", () => {
  let srv2;
  let healthy2;
  before(async () => {
    srv2 = await startServer("eio_echo", ["--ping-interval", "300", "--ping-timeout", "300"]);
    healthy2 = await Healthy.open(srv2);
  });
  after(async () => {
    healthy2?.close();
    await srv2?.stop();
  });

  it("a WebSocket client that never answers pings is pinged, then closed", T, async () => {
    const { conn } = await wsOpen(srv2.port);
    try {
      const t0 = Date.now();
      const f = await conn.readFrame({ timeoutMs: 2000 });
      assert.deepEqual([f.opcode, f.text], [OP.TEXT, "2"], "expected an Engine.IO ping");
      await expectWsClose(conn, "any-or-none", { timeoutMs: 3000 });
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 450 && elapsed < 3000, `closed after ${elapsed} ms`);
    } finally {
      conn.destroy();
    }
  });

  it("a polling client that never polls again is dropped", T, async () => {
    const before = (await stats(srv2.port)).sessions;
    await pollOpen(srv2.port);
    await waitUntil(async () => (await stats(srv2.port)).sessions === before + 1, { what: "the session to appear" });
    await waitUntil(async () => (await stats(srv2.port)).sessions === before, { timeoutMs: 4000, what: "the session to time out" });
  });

  it("the well-behaved client survives many ping rounds", T, async () => {
    await sleep(1500);
    assert.equal(healthy2.closed, false);
    await healthy2.echo();
    await waitUntil(async () => (await stats(srv2.port)).sessions === 1, { what: "only the healthy session" });
  });
});

void WS_PATH;
