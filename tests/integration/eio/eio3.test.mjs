// Engine.IO v3 (socket.io 2 clients) at the byte level, against eio_echo --allow-eio3:
// the v3 polling framing both ways (text with UTF-16 lengths, base64 binary, the binary
// payload and `b64`), the heartbeat the client drives (its ping answered with a pong, the
// session ended when pings stop), v3 binary WebSocket messages with their type byte, and
// that maxPayload, CORS and the per-address limits apply to v3 sessions as to v4 ones.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { WsClient, eioUrl, request, startEcho, withTimeout } from "./util.mjs";

const url3 = (srv, q = {}) => eioUrl(srv, { EIO: "3", transport: "polling", ...q });

// Parses a v3 text payload into its packets, checking each length in UTF-16 units.
function parseText(text) {
  const out = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    assert.ok(colon > i, `a length at ${i} of ${JSON.stringify(text)}`);
    const n = Number(text.slice(i, colon));
    out.push(text.substr(colon + 1, n));
    i = colon + 1 + n;
  }
  assert.equal(i, text.length, "lengths add up to the payload");
  return out;
}

async function handshake3(srv, q = {}) {
  const r = await request(url3(srv, q));
  assert.equal(r.status, 200, r.text);
  const [open] = parseText(r.text);
  assert.equal(open[0], "0");
  return { sid: JSON.parse(open.slice(1)).sid, open: JSON.parse(open.slice(1)), r };
}

const post = (srv, sid, body, headers = {}) =>
  request(url3(srv, { sid }), { method: "POST", body, headers: { "content-type": "text/plain;charset=UTF-8", ...headers } });
const poll = (srv, sid, q = {}) => request(url3(srv, { sid, ...q }));

// The packets of a poll, pongs and noops left out.
async function pollPackets(srv, sid) {
  const r = await poll(srv, sid);
  assert.equal(r.status, 200);
  return parseText(r.text).filter((p) => p !== "3" && p !== "6");
}

describe("Engine.IO v3 over eio_echo --allow-eio3", () => {
  let srv;
  before(async () => {
    srv = await startEcho(["--allow-eio3", "--ping-interval", "300", "--ping-timeout", "200", "--max-payload", "1000", "--cors-origin", "https://app.example"]);
  });
  after(() => srv?.stop());

  test("the open packet is length-framed; no ping comes from the server", async () => {
    const { open, r } = await handshake3(srv);
    assert.match(r.headers["content-type"], /^text\/plain/);
    assert.deepEqual(open.upgrades, ["websocket"]);
    assert.equal(open.pingInterval, 300);
    // v4 would have pinged after 300 ms: a held poll gets nothing until the client pings.
    const { sid } = await handshake3(srv);
    const held = poll(srv, sid);
    await new Promise((res) => setTimeout(res, 150));
    assert.equal((await post(srv, sid, "1:2")).text, "ok");
    assert.deepEqual(parseText((await held).text), ["3"]);
  });

  test("text lengths count UTF-16 units, not bytes", async () => {
    const { sid } = await handshake3(srv);
    const text = "4héllo 😀 中"; // 11 units, 17 bytes
    assert.equal(text.length, 11);
    assert.equal((await post(srv, sid, `${text.length}:${text}2:4a`)).text, "ok");
    assert.deepEqual(await pollPackets(srv, sid), [text.slice(0), "4a"]);
    // A length ending inside the surrogate pair of 😀 is malformed.
    const { sid: sid2 } = await handshake3(srv);
    const bad = await post(srv, sid2, "2:4😀");
    assert.equal(bad.status, 400);
    // Bytes as the length (what a wrong implementation would use) is malformed too.
    const { sid: sid3 } = await handshake3(srv);
    assert.equal((await post(srv, sid3, `${Buffer.byteLength(text)}:${text}`)).status, 400);
  });

  test("binary: base64 in, a binary payload out; with b64=1 base64 out", async () => {
    const { sid } = await handshake3(srv);
    assert.equal((await post(srv, sid, "6:b4AQID")).text, "ok");
    const r = await poll(srv, sid);
    assert.equal(r.headers["content-type"], "application/octet-stream");
    assert.deepEqual([...r.body], [1, 4, 0xff, 4, 1, 2, 3]);

    const { sid: s64 } = await handshake3(srv, { b64: "1" });
    assert.equal((await post(srv, s64, "6:b4AQID2:4x")).text, "ok");
    const r64 = await poll(srv, s64, { b64: "1" });
    assert.match(r64.headers["content-type"], /^text\/plain/);
    assert.deepEqual(parseText(r64.text), ["b4AQID", "4x"]);
  });

  test("a binary payload from the client (application/octet-stream)", async () => {
    const { sid } = await handshake3(srv);
    const body = Buffer.from([0, 3, 0xff, ...Buffer.from("4é"), 1, 3, 0xff, 4, 9, 8]);
    // "4é" is three UTF-8 bytes: the binary framing counts bytes.
    const r = await post(srv, sid, body, { "content-type": "application/octet-stream" });
    assert.equal(r.text, "ok");
    const out = await poll(srv, sid);
    assert.deepEqual([...out.body], [0, 3, 0xff, ...Buffer.from("4é"), 1, 3, 0xff, 4, 9, 8]);
    const { sid: bad } = await handshake3(srv);
    const truncated = Buffer.from([1, 9, 0xff, 4, 1]);
    assert.equal((await post(srv, bad, truncated, { "content-type": "application/octet-stream" })).status, 400);
  });

  test("a session whose client stops pinging ends after pingInterval + pingTimeout", async () => {
    const { sid } = await handshake3(srv);
    const held = await poll(srv, sid, {}); // answered with the close packet when it ends
    assert.deepEqual(parseText(held.text), ["1"]);
    const after = await poll(srv, sid);
    assert.equal(after.status, 400);
    assert.equal(after.json().code, 1);
  });

  test("a pong from a v3 client is the wrong heartbeat direction: the session ends", async () => {
    const { sid } = await handshake3(srv);
    await post(srv, sid, "1:3");
    const r = await poll(srv, sid);
    assert.equal(r.status, 400);
  });

  test("websocket: binary messages carry the type byte; ping, pong and the probe", async () => {
    const c = new WsClient(eioUrl(srv, { EIO: "3", transport: "websocket" }, { ws: true }));
    await withTimeout(c.opened, 5000, "websocket open");
    const open = await c.next();
    assert.equal(open[0], "0");
    c.send(Buffer.from([4, 7, 8, 9]));
    assert.deepEqual([...(await c.next())], [4, 7, 8, 9]);
    c.send("2");
    assert.equal(await c.next(), "3");
    c.send("4hé");
    assert.equal(await c.next(), "4hé");
    // A binary message without the message type byte is malformed: the session ends.
    c.send(Buffer.from([2, 1]));
    await c.waitClosed();
    c.close();
  });

  test("polling → websocket upgrade", async () => {
    const { sid } = await handshake3(srv);
    const c = new WsClient(eioUrl(srv, { EIO: "3", transport: "websocket", sid }, { ws: true }));
    await withTimeout(c.opened, 5000, "probe open");
    c.send("2probe");
    assert.equal(await c.next(), "3probe");
    c.send("5");
    c.send(Buffer.from([4, 1]));
    assert.deepEqual([...(await c.next())], [4, 1]);
    c.close();
  });

  test("maxPayload, CORS and the Origin answer apply to v3 sessions", async () => {
    const { sid, r } = await handshake3(srv, {});
    assert.equal(r.headers["access-control-allow-origin"], undefined);
    const cors = await request(url3(srv), { headers: { origin: "https://app.example" } });
    assert.equal(cors.headers["access-control-allow-origin"], "https://app.example");
    const big = "4" + "x".repeat(1200);
    assert.equal((await post(srv, sid, `${big.length}:${big}`)).status, 413);
  });
});

describe("Engine.IO v3 limits", () => {
  let srv;
  before(async () => {
    srv = await startEcho(["--allow-eio3", "--max-connections-per-ip", "1", "--check-origin", "--cors-origin", "https://app.example"]);
  });
  after(() => srv?.stop());

  test("per-address session cap and the origin check", async () => {
    const forbidden = await request(url3(srv), { headers: { origin: "https://evil.example" } });
    assert.equal(forbidden.status, 403);
    const first = await handshake3(srv);
    const second = await request(url3(srv));
    assert.equal(second.status, 503);
    assert.equal((await post(srv, first.sid, "1:1")).text, "ok");
  });
});

describe("Engine.IO v3 without --allow-eio3", () => {
  let srv;
  before(async () => {
    srv = await startEcho([]);
  });
  after(() => srv?.stop());

  test("EIO=3 is refused with code 5, over polling and websocket", async () => {
    const r = await request(url3(srv));
    assert.equal(r.status, 400);
    assert.equal(r.json().code, 5);
    const c = new WsClient(eioUrl(srv, { EIO: "3", transport: "websocket" }, { ws: true }));
    await assert.rejects(c.opened);
    assert.equal(c.unexpectedStatus, 400);
  });
});
