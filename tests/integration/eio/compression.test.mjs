// Compressed long-polling responses (engine.io's httpCompression): a poll whose answer is
// 1024 bytes or more is gzip or deflate as the request's Accept-Encoding allows, and
// inflates to the very payload an uncompressed poll gets; smaller answers, requests
// without Accept-Encoding and a server with compression off are plain; every poll answer
// says Vary: Accept-Encoding. Raw HTTP against eio_echo, v4 and v3 payloads, then the
// chat with socket.io-client's fetch transport (Node's fetch asks for gzip and inflates).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { Fetch, io } from "socket.io-client";
import { eioUrl, pollingHandshake, pollUrl, request, startEcho, withTimeout } from "./util.mjs";
import { newRoom, newUser, startParley } from "../chat/util.mjs";

const big = "é".repeat(600) + "x".repeat(200); // 1400 bytes

async function echoSession(srv, packets) {
  const { sid } = await pollingHandshake(srv);
  const body = packets.join("\x1e");
  const r = await request(pollUrl(srv, sid), { method: "POST", body, headers: { "content-type": "text/plain;charset=UTF-8" } });
  assert.equal(r.text, "ok");
  return sid;
}

describe("polling compression in eio_echo", () => {
  let srv;
  before(async () => {
    srv = await startEcho(["--allow-eio3", "--ping-interval", "20000"]);
  });
  after(() => srv?.stop());

  for (const [asked, enc, inflate] of [
    ["gzip, deflate", "gzip", zlib.gunzipSync],
    ["deflate", "deflate", zlib.inflateSync],
    ["gzip;q=0.5, deflate;q=0.8", "deflate", zlib.inflateSync],
    ["gzip;q=0, *", "deflate", zlib.inflateSync],
    ["*", "gzip", zlib.gunzipSync],
  ]) {
    test(`Accept-Encoding: ${asked} → ${enc}, inflating to the payload`, async () => {
      const sid = await echoSession(srv, [`4${big}`]);
      const r = await request(pollUrl(srv, sid), { headers: { "accept-encoding": asked } });
      assert.equal(r.status, 200);
      assert.equal(r.headers["content-encoding"], enc);
      assert.equal(r.headers.vary, "Accept-Encoding");
      assert.equal(Number(r.headers["content-length"]), r.body.length);
      assert.ok(r.body.length < Buffer.byteLength(big), "smaller than the payload");
      assert.equal(inflate(r.body).toString("utf8"), `4${big}`);
    });
  }

  test("several packets in one answer are compressed together", async () => {
    const sid = await echoSession(srv, [`4${big}`, "4second", "4third"]);
    const r = await request(pollUrl(srv, sid), { headers: { "accept-encoding": "gzip" } });
    assert.equal(r.headers["content-encoding"], "gzip");
    assert.equal(zlib.gunzipSync(r.body).toString("utf8"), [`4${big}`, "4second", "4third"].join("\x1e"));
  });

  test("a binary message's base64 form is compressed too", async () => {
    const bytes = Buffer.alloc(2000, 7);
    const sid = await echoSession(srv, [`b${bytes.toString("base64")}`]);
    const r = await request(pollUrl(srv, sid), { headers: { "accept-encoding": "deflate" } });
    assert.equal(r.headers["content-encoding"], "deflate");
    assert.equal(zlib.inflateSync(r.body).toString(), `b${bytes.toString("base64")}`);
  });

  test("below 1024 bytes, without Accept-Encoding, or with identity only: plain", async () => {
    const small = await echoSession(srv, ["4" + "y".repeat(1000)]);
    const r1 = await request(pollUrl(srv, small), { headers: { "accept-encoding": "gzip" } });
    assert.equal(r1.headers["content-encoding"], undefined);
    assert.equal(r1.headers.vary, "Accept-Encoding");
    assert.equal(r1.text, "4" + "y".repeat(1000));
    const none = await echoSession(srv, [`4${big}`]);
    const r2 = await request(pollUrl(srv, none));
    assert.equal(r2.headers["content-encoding"], undefined);
    assert.equal(r2.text, `4${big}`);
    const ident = await echoSession(srv, [`4${big}`]);
    const r3 = await request(pollUrl(srv, ident), { headers: { "accept-encoding": "identity, gzip;q=0" } });
    assert.equal(r3.headers["content-encoding"], undefined);
    assert.equal(r3.text, `4${big}`);
  });

  test("v3 payloads (length-framed) are compressed the same way", async () => {
    const r0 = await request(eioUrl(srv, { EIO: "3", transport: "polling" }));
    const open = JSON.parse(r0.text.slice(r0.text.indexOf(":") + 2));
    const msg = `4${big}`;
    const post = await request(eioUrl(srv, { EIO: "3", transport: "polling", sid: open.sid }), {
      method: "POST",
      body: `${msg.length}:${msg}`,
      headers: { "content-type": "text/plain;charset=UTF-8" },
    });
    assert.equal(post.text, "ok");
    const r = await request(eioUrl(srv, { EIO: "3", transport: "polling", sid: open.sid }), { headers: { "accept-encoding": "gzip" } });
    assert.equal(r.headers["content-encoding"], "gzip");
    assert.equal(zlib.gunzipSync(r.body).toString("utf8"), `${msg.length}:${msg}`);
  });
});

describe("polling compression off", () => {
  let srv;
  before(async () => {
    srv = await startEcho(["--no-http-compression"]);
  });
  after(() => srv?.stop());

  test("no Content-Encoding and no Vary", async () => {
    const sid = await echoSession(srv, [`4${big}`]);
    const r = await request(pollUrl(srv, sid), { headers: { "accept-encoding": "gzip, deflate" } });
    assert.equal(r.headers["content-encoding"], undefined);
    assert.equal(r.headers.vary, undefined);
    assert.equal(r.text, `4${big}`);
  });
});

describe("the chat over socket.io-client's fetch polling (gzip accepted)", () => {
  let srv;
  const sockets = [];
  before(async () => {
    srv = await startParley(["--store", "memory"]);
  });
  after(async () => {
    for (const s of sockets) s.close();
    await srv?.stop();
    srv?.cleanup();
  });

  test("history and messages above the threshold arrive intact", async () => {
    const room = newRoom();
    const connect = (u) => {
      const s = io(srv.url, { forceNew: true, reconnection: false, transports: [Fetch], auth: { token: u.token } });
      sockets.push(s);
      return withTimeout(new Promise((resolve, reject) => { s.once("connect", () => resolve(s)); s.once("connect_error", reject); }), 5000, "connect");
    };
    const a = await connect(newUser("Ann"));
    assert.equal(a.io.engine.transport.name, "polling");
    assert.equal((await a.timeout(5000).emitWithAck("joinRoom", { roomId: room })).ok, true);
    const texts = [];
    for (let i = 0; i < 3; i++) {
      texts.push(`${i} ${big}`);
      assert.equal((await a.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: texts[i] })).ok, true);
    }
    const b = await connect(newUser("Bob"));
    const history = new Promise((resolve) => b.once("messageHistory", resolve));
    assert.equal((await b.timeout(5000).emitWithAck("joinRoom", { roomId: room })).ok, true);
    assert.deepEqual((await withTimeout(history, 5000, "messageHistory")).map((m) => m.text), texts);
    const got = new Promise((resolve) => b.once("newMessage", resolve));
    await a.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: `last ${big}` });
    assert.equal((await withTimeout(got, 5000, "newMessage")).text, `last ${big}`);
    assert.equal(b.io.engine.transport.name, "polling");
  });

  test("parley compresses a polling answer above the threshold", async () => {
    const u = newUser("Cy");
    const base = `${srv.url}/socket.io/?EIO=4&transport=polling`;
    const open = await request(base);
    const sid = JSON.parse(open.text.slice(1)).sid;
    const q = `${base}&sid=${sid}`;
    assert.equal((await request(q, { method: "POST", body: `40${JSON.stringify({ token: u.token })}`, headers: { "content-type": "text/plain" } })).text, "ok");
    await request(q); // the CONNECT reply
    const room = newRoom();
    assert.equal((await request(q, { method: "POST", body: `421["joinRoom",{"roomId":"${room}"}]`, headers: { "content-type": "text/plain" } })).text, "ok");
    await request(q); // the ack and the (empty) history
    const text = big;
    assert.equal((await request(q, { method: "POST", body: `422["sendMessage",${JSON.stringify({ roomId: room, text })}]`, headers: { "content-type": "text/plain" } })).text, "ok");
    // Wait for the answer to be above the threshold: the newMessage and the ack.
    let body = "";
    for (let i = 0; i < 5 && !body.includes("newMessage"); i++) {
      const r = await request(q, { headers: { "accept-encoding": "gzip" } });
      body += r.headers["content-encoding"] === "gzip" ? zlib.gunzipSync(r.body).toString("utf8") : r.text;
      if (body.includes("newMessage")) assert.equal(r.headers["content-encoding"], "gzip");
    }
    assert.ok(body.includes(text));
  });
});
