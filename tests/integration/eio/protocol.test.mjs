// Engine.IO v4 protocol conformance of eio_echo, driven by hand with plain HTTP requests and the
// `ws` package (no Engine.IO client library), after the behaviours of the official test suite
// (socketio/engine.io-protocol, test-suite/) plus Parley's own contract: error bodies and codes,
// EIO=3, unknown sid, maxPayload, CORS, the io cookie.
//
// Each describe() group runs its own server and ends by checking that /stats is back to zero
// sessions and that the server shuts down cleanly (no sanitizer report under ASan).
//
// A note on "barriers": to make sure a long-poll GET is parked on the server before the next
// step (a second GET, a "1" POST, a probe) the tests wait until the GET is written to the socket
// and then do one /stats round trip. The GET's bytes were in the server's receive queue before the
// /stats connection even existed, so a single-threaded event loop has read them by the time it
// answers /stats.
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { waitUntil } from "../lib/server.mjs";
import {
  startEcho,
  request,
  pollUrl,
  wsUrl,
  eioUrl,
  getStats,
  waitIdle,
  pollingHandshake,
  withoutPings,
  errorBody,
  WsClient,
  wsHandshake,
  withTimeout,
  SEP,
  serverGroup as group,
  rst,
} from "./util.mjs";

const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;
const MAX_PAYLOAD = 1000000;
const HB = ["--ping-interval", String(PING_INTERVAL), "--ping-timeout", String(PING_TIMEOUT)];
// For groups that do not test the heartbeat: a slow (sanitized, loaded) run must not time
// out a polling session that is in the middle of a large POST.
const RELAXED = ["--ping-interval", "5000", "--ping-timeout", "5000"];
const SID_RE = /^[A-Za-z0-9_-]{22}$/;
const OPEN_KEYS = ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"];

// Sends a long-poll GET and resolves once the server has certainly read it (see the header),
// to { response } (a promise of the GET's answer; wrapped so that it is not awaited here).
async function parkedGet(srv, sid) {
  let req;
  const response = request(pollUrl(srv, sid), { onRequest: (r) => (req = r) });
  response.catch(() => {});
  if (!req.writableFinished) await withTimeout(once(req, "finish"), 5000, "the GET to be written");
  await getStats(srv);
  return { response };
}

async function post(srv, sid, body, headers) {
  return request(pollUrl(srv, sid), { method: "POST", body, headers });
}

function assertError(r, status, code, message) {
  assert.equal(r.status, status, `status (body ${r.text})`);
  assert.match(String(r.headers["content-type"]), /application\/json/, "error content-type");
  const e = errorBody(r);
  assert.equal(e.code, code, `error code in ${r.text}`);
  if (message !== undefined) assert.equal(e.message, message, `error message in ${r.text}`);
}

function assertOpenPacket(open, upgrades) {
  assert.deepEqual(Object.keys(open).sort(), OPEN_KEYS);
  assert.equal(typeof open.sid, "string");
  assert.match(open.sid, SID_RE);
  assert.deepEqual(open.upgrades, upgrades);
  assert.equal(open.pingInterval, PING_INTERVAL);
  assert.equal(open.pingTimeout, PING_TIMEOUT);
  assert.equal(open.maxPayload, MAX_PAYLOAD);
}

// A websocket that must be refused: no open packet, and closed (either an HTTP error answer to the
// upgrade request, or an accepted upgrade that is closed at once).
async function assertWsRefused(ctx, url) {
  const c = ctx.ws(url);
  await c.waitClosed(5000);
  assert.equal(c.queue.find((m) => typeof m === "string" && m.startsWith("0")), undefined, "no open packet");
  if (c.unexpectedStatus !== null) assert.equal(c.unexpectedStatus, 400, "refused upgrade status");
  return c;
}

// Polling session closed politely (the client's "1"), so groups do not wait on ping timeouts.
async function closePolling(srv, sid) {
  const r = await post(srv, sid, "1");
  assert.equal(r.status, 200);
}

// Completes a polling→websocket upgrade and returns the websocket (messages synced: everything
// the server sent before "5" was processed has been read). Checks the pending GET gets "6".
async function upgrade(ctx, sid) {
  const c = ctx.ws(wsUrl(ctx.srv, sid));
  await withTimeout(c.opened, 5000, "websocket open");
  c.send("2probe");
  assert.equal(await c.nextNonPing(), "3probe");
  const poll = await request(pollUrl(ctx.srv, sid));
  assert.equal(poll.status, 200);
  assert.deepEqual(withoutPings(poll.text), ["6"]);
  c.send("5");
  c.send("4sync");
  assert.equal(await c.nextNonPing(), "4sync");
  return c;
}

// ---------------------------------------------------------------------------------------------

group("handshake", HB, (ctx) => {
  test("polling: opens a session with the exact open packet", async () => {
    const r = await request(pollUrl(ctx.srv), { headers: { origin: "http://example.test" } });
    assert.equal(r.status, 200);
    assert.ok(r.text.startsWith("0"), r.text);
    const open = JSON.parse(r.text.slice(1));
    assertOpenPacket(open, ["websocket"]);
    // no --cors-origin and no --cookie on this server
    assert.equal(r.headers["access-control-allow-origin"], undefined);
    assert.equal(r.headers["set-cookie"], undefined);
    await closePolling(ctx.srv, open.sid);
  });

  test("polling: session ids are distinct 22-char base64url strings", async () => {
    const sids = new Set();
    for (let i = 0; i < 50; i++) {
      const { sid } = await pollingHandshake(ctx.srv);
      assert.match(sid, SID_RE);
      sids.add(sid);
      await closePolling(ctx.srv, sid);
    }
    assert.equal(sids.size, 50);
  });

  test("polling: missing or invalid EIO → 400", async () => {
    for (const q of [{ transport: "polling" }, { EIO: "abc", transport: "polling" }, { EIO: "5", transport: "polling" }]) {
      const r = await request(eioUrl(ctx.srv, q));
      assert.equal(r.status, 400, `${JSON.stringify(q)} → ${r.status} ${r.text}`);
      const e = errorBody(r);
      assert.ok([3, 5].includes(e.code), `${JSON.stringify(q)} → code ${e.code}`);
      assert.equal(typeof e.message, "string");
    }
  });

  test("polling: EIO=3 → 400 code 5 Unsupported protocol version", async () => {
    const r = await request(eioUrl(ctx.srv, { EIO: "3", transport: "polling" }));
    assertError(r, 400, 5, "Unsupported protocol version");
  });

  test("polling: missing or unknown transport → 400 code 0 Transport unknown", async () => {
    for (const q of [{ EIO: "4" }, { EIO: "4", transport: "abc" }, { EIO: "4", transport: "" }]) {
      const r = await request(eioUrl(ctx.srv, q));
      assertError(r, 400, 0, "Transport unknown");
    }
  });

  test("polling: handshake with POST or PUT → 400 code 2 Bad handshake method", async () => {
    for (const method of ["POST", "PUT"]) {
      const r = await request(pollUrl(ctx.srv), { method, body: "4hello" });
      assertError(r, 400, 2, "Bad handshake method");
    }
  });

  test("polling: unknown sid → 400 code 1 Session ID unknown (GET and POST)", async () => {
    const sid = "AAAAAAAAAAAAAAAAAAAAAA";
    assertError(await request(pollUrl(ctx.srv, sid)), 400, 1, "Session ID unknown");
    assertError(await post(ctx.srv, sid, "4hello"), 400, 1, "Session ID unknown");
    assertError(await request(pollUrl(ctx.srv, "nope")), 400, 1, "Session ID unknown");
  });

  test("transport=websocket without an Upgrade → 400 code 3 Bad request", async () => {
    const r = await request(eioUrl(ctx.srv, { EIO: "4", transport: "websocket" }));
    assertError(r, 400, 3, "Bad request");
  });

  test("polling sid used with transport=websocket without an Upgrade → 400", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const r = await request(eioUrl(ctx.srv, { EIO: "4", transport: "websocket", sid }));
    assertError(r, 400, 3, "Bad request");
    await closePolling(ctx.srv, sid);
  });

  test("websocket: opens a session with the exact open packet", async () => {
    const { client, open } = await ctx.wsOpen();
    assertOpenPacket(open, []);
    await client.close();
  });

  test("websocket: missing/invalid EIO, EIO=3, missing/unknown transport, unknown sid are refused", async () => {
    const base = ctx.srv.wsUrl + "/engine.io/";
    for (const qs of [
      "?transport=websocket",
      "?EIO=abc&transport=websocket",
      "?EIO=3&transport=websocket",
      "?EIO=4",
      "?EIO=4&transport=abc",
      "?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAAAA",
    ]) {
      await assertWsRefused(ctx, base + qs);
    }
  });

  test("GET /stats is JSON with sessions and connections", async () => {
    const r = await request(`${ctx.srv.url}/stats`);
    assert.equal(r.status, 200);
    assert.match(String(r.headers["content-type"]), /application\/json/);
    const s = r.json();
    assert.equal(typeof s.sessions, "number");
    assert.equal(typeof s.connections, "number");
    assert.ok(s.connections >= 1, "the /stats request's own connection is open");
  });
});

// ---------------------------------------------------------------------------------------------

group("message", HB, (ctx) => {
  async function roundTrip(payload, expected = payload) {
    const { sid } = await pollingHandshake(ctx.srv);
    const p = await post(ctx.srv, sid, payload, { "content-type": "text/plain;charset=UTF-8" });
    assert.equal(p.status, 200);
    assert.equal(p.text, "ok");
    const g = await request(pollUrl(ctx.srv, sid));
    assert.equal(g.status, 200);
    assert.deepEqual(withoutPings(g.text), withoutPings(expected));
    await closePolling(ctx.srv, sid);
  }

  test("polling: one plain text packet", () => roundTrip("4hello"));

  test("polling: several plain text packets", () => roundTrip(`4test1${SEP}4test2${SEP}4test3`));

  test("polling: plain text and binary packets", () => roundTrip(`4hello${SEP}bAQIDBA==`));

  test("polling: UTF-8 text, empty messages and empty binary", () =>
    roundTrip(`4héllo wörld € 𝄞 😀🎉${SEP}4${SEP}b${SEP}4日本語`));

  test("polling: large binary packet (base64) and large text", () => {
    const bin = Buffer.alloc(100000);
    for (let i = 0; i < bin.length; i++) bin[i] = (i * 131 + 7) & 255;
    return roundTrip(`b${bin.toString("base64")}${SEP}4${"😀é".repeat(20000)}`);
  });

  test("polling: packets of several POSTs are answered in order in one GET", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    for (const m of ["4a", `4b${SEP}bAA==`, "4c"]) assert.equal((await post(ctx.srv, sid, m)).status, 200);
    const g = await request(pollUrl(ctx.srv, sid));
    assert.deepEqual(withoutPings(g.text), ["4a", "4b", "bAA==", "4c"]);
    await closePolling(ctx.srv, sid);
  });

  test("polling: a pending GET is answered by a later POST's echo", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const { response: g } = await parkedGet(ctx.srv, sid);
    assert.equal((await post(ctx.srv, sid, "4wake")).status, 200);
    const r = await g;
    assert.equal(r.status, 200);
    assert.deepEqual(withoutPings(r.text), ["4wake"]);
    await closePolling(ctx.srv, sid);
  });

  for (const bad of ["abc", "9hello", `4ok${SEP}x`]) {
    test(`polling: invalid packet ${JSON.stringify(bad)} → 400 and the session is closed`, async () => {
      const { sid } = await pollingHandshake(ctx.srv);
      const p = await post(ctx.srv, sid, bad);
      assert.equal(p.status, 400, `POST ${JSON.stringify(bad)} → ${p.status} ${p.text}`);
      const g = await request(pollUrl(ctx.srv, sid));
      assert.equal(g.status, 400);
    });
  }

  test("polling: duplicate GET → first answered 1, second 400, session closed", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const { response: first } = await parkedGet(ctx.srv, sid);
    const second = await request(pollUrl(ctx.srv, sid, { t: "burst" }));
    const r1 = await first;
    assert.equal(r1.status, 200);
    assert.equal(r1.text, "1");
    assert.equal(second.status, 400);
    assert.equal((await request(pollUrl(ctx.srv, sid))).status, 400);
  });

  test("websocket: plain text packet", async () => {
    const { client } = await ctx.wsOpen();
    client.send("4hello");
    assert.equal(await client.nextNonPing(), "4hello");
    await client.close();
  });

  test("websocket: binary packet", async () => {
    const { client } = await ctx.wsOpen();
    client.send(Uint8Array.from([1, 2, 3, 4]));
    const m = await client.nextNonPing();
    assert.ok(Buffer.isBuffer(m), "echoed as a binary frame");
    assert.deepEqual([...m], [1, 2, 3, 4]);
    await client.close();
  });

  test("websocket: UTF-8 text, empty text, empty and large binary, in order", async () => {
    const { client } = await ctx.wsOpen();
    const big = Buffer.alloc(200000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 17) & 255;
    const msgs = ["4héllo € 𝄞 😀", "4", Buffer.alloc(0), big, "4" + "€".repeat(50000), Buffer.from([0, 255])];
    for (const m of msgs) client.send(m);
    for (const m of msgs) {
      const got = await client.nextNonPing();
      if (typeof m === "string") assert.equal(got, m);
      else {
        assert.ok(Buffer.isBuffer(got), "binary frame");
        assert.ok(got.equals(m), `binary of ${m.length} bytes intact`);
      }
    }
    await client.close();
  });

  for (const bad of ["abc", "9hello"]) {
    test(`websocket: invalid packet ${JSON.stringify(bad)} closes the session`, async () => {
      const { client } = await ctx.wsOpen();
      client.send(bad);
      await client.waitClosed(3000);
    });
  }
});

// ---------------------------------------------------------------------------------------------

group("heartbeat", HB, (ctx) => {
  test("polling: ping every pingInterval, session kept alive by pongs", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    let t = Date.now();
    for (let i = 0; i < 3; i++) {
      const g = await request(pollUrl(ctx.srv, sid));
      assert.equal(g.status, 200);
      assert.equal(g.text, "2");
      const dt = Date.now() - t;
      assert.ok(dt >= PING_INTERVAL - 100 && dt < PING_INTERVAL + 2000, `ping after ${dt} ms`);
      const p = await post(ctx.srv, sid, "3");
      assert.equal(p.status, 200);
      assert.equal(p.text, "ok");
      t = Date.now();
    }
    // alive for well over pingInterval + pingTimeout thanks to the pongs
    await closePolling(ctx.srv, sid);
  });

  test("polling: no pong → session closed after pingTimeout", async () => {
    await waitIdle(ctx.srv);
    const { sid } = await pollingHandshake(ctx.srv);
    const g = await request(pollUrl(ctx.srv, sid));
    assert.equal(g.text, "2");
    const tPing = Date.now();
    await waitUntil(async () => (await getStats(ctx.srv)).sessions === 0, {
      timeoutMs: 3000,
      intervalMs: 10,
      what: "the session to time out",
    });
    const dt = Date.now() - tPing;
    assert.ok(dt >= PING_TIMEOUT - 100, `closed ${dt} ms after the ping, before pingTimeout`);
    assertError(await request(pollUrl(ctx.srv, sid)), 400, 1);
  });

  test("polling: a session never polled again times out too", async () => {
    await waitIdle(ctx.srv);
    const { sid } = await pollingHandshake(ctx.srv);
    await waitUntil(async () => (await getStats(ctx.srv)).sessions === 0, {
      timeoutMs: 3000,
      what: "the session to time out",
    });
    assert.equal((await request(pollUrl(ctx.srv, sid))).status, 400);
  });

  test("websocket: ping every pingInterval, session kept alive by pongs", async () => {
    const { client } = await ctx.wsOpen();
    let t = Date.now();
    for (let i = 0; i < 3; i++) {
      assert.equal(await client.next(3000), "2");
      const dt = Date.now() - t;
      assert.ok(dt >= PING_INTERVAL - 100, `ping after ${dt} ms`);
      client.send("3");
      t = Date.now();
    }
    assert.equal(client.isClosed, false);
    client.send("4still");
    assert.equal(await client.nextNonPing(), "4still");
    await client.close();
  });

  test("websocket: no pong → closed after pingTimeout", async () => {
    await waitIdle(ctx.srv);
    const { client } = await ctx.wsOpen();
    assert.equal(await client.next(3000), "2");
    const tPing = Date.now();
    await client.waitClosed(3000);
    const dt = Date.now() - tPing;
    assert.ok(dt >= PING_TIMEOUT - 100, `closed ${dt} ms after the ping, before pingTimeout`);
    await waitUntil(async () => (await getStats(ctx.srv)).sessions === 0, { timeoutMs: 3000, what: "sessions 0" });
  });
});

// ---------------------------------------------------------------------------------------------

group("close", HB, (ctx) => {
  test("polling: a 1 packet answers the pending GET with 6 and closes the session", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const { response: g } = await parkedGet(ctx.srv, sid);
    const p = await post(ctx.srv, sid, "1");
    assert.equal(p.status, 200);
    const r = await g;
    assert.equal(r.status, 200);
    assert.equal(r.text, "6");
    assert.equal((await request(pollUrl(ctx.srv, sid))).status, 400);
    assert.equal((await post(ctx.srv, sid, "4late")).status, 400);
  });

  test("polling: a 1 packet with no pending GET closes the session", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    assert.equal((await post(ctx.srv, sid, `4bye${SEP}1`)).status, 200);
    assertError(await request(pollUrl(ctx.srv, sid)), 400, 1);
  });

  test("websocket: a 1 packet closes the connection and the session", async () => {
    await waitIdle(ctx.srv);
    const { client } = await ctx.wsOpen();
    client.send("1");
    await client.waitClosed(3000);
    await waitIdle(ctx.srv, { timeoutMs: 3000 });
  });

  test("websocket: a client close frame ends the session", async () => {
    const { client } = await ctx.wsOpen();
    await client.close();
    await waitIdle(ctx.srv, { timeoutMs: 3000 });
  });

  test("websocket: a TCP reset ends the session", async () => {
    const { client } = await ctx.wsOpen();
    client.reset();
    await waitIdle(ctx.srv, { timeoutMs: 3000 });
  });

  test("polling: a pending GET reset by the client does not break the session", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    let req;
    const g = request(pollUrl(ctx.srv, sid), { onRequest: (r) => (req = r) });
    g.catch(() => {});
    await once(req, "finish");
    await getStats(ctx.srv);
    assert.ok(rst(req.socket), "the GET's socket is still open");
    await assert.rejects(g);
    // the session is either still usable or (acceptably) closed; the server must stay healthy
    const p = await post(ctx.srv, sid, "4after");
    assert.ok([200, 400].includes(p.status), `POST after reset → ${p.status}`);
    if (p.status === 200) await closePolling(ctx.srv, sid);
    await waitIdle(ctx.srv, { timeoutMs: 3000 });
  });
});

// ---------------------------------------------------------------------------------------------

group("upgrade", HB, (ctx) => {
  test("polling → websocket: probe, noop to the GET, upgrade, then messages over websocket", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const c = ctx.ws(wsUrl(ctx.srv, sid));
    await withTimeout(c.opened, 5000, "websocket open");
    c.send("2probe");
    assert.equal(await c.nextNonPing(), "3probe");
    const poll = await request(pollUrl(ctx.srv, sid));
    assert.equal(poll.status, 200);
    assert.deepEqual(withoutPings(poll.text), ["6"]);
    c.send("5");
    c.send("4hello");
    assert.equal(await c.nextNonPing(), "4hello");
    c.send(Buffer.from([9, 8, 7]));
    const b = await c.nextNonPing();
    assert.ok(Buffer.isBuffer(b));
    assert.deepEqual([...b], [9, 8, 7]);
    await c.close();
  });

  test("a GET pending when the probe arrives is answered 6", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const { response: g } = await parkedGet(ctx.srv, sid);
    const c = ctx.ws(wsUrl(ctx.srv, sid));
    await withTimeout(c.opened, 5000, "websocket open");
    c.send("2probe");
    assert.equal(await c.nextNonPing(), "3probe");
    const r = await withTimeout(g, 3000, "the pending GET");
    assert.equal(r.status, 200);
    assert.deepEqual(withoutPings(r.text), ["6"]);
    c.send("5");
    c.send("4hi");
    assert.equal(await c.nextNonPing(), "4hi");
    await c.close();
  });

  test("ignores HTTP requests with the same sid after the upgrade", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const c = ctx.ws(wsUrl(ctx.srv, sid));
    await withTimeout(c.opened, 5000, "websocket open");
    c.send("2probe");
    c.send("5");
    // everything before this echo has been processed by the server
    c.send("4sync");
    const got = [await c.nextNonPing(), await c.nextNonPing()];
    assert.deepEqual(got, ["3probe", "4sync"]);
    assert.equal((await request(pollUrl(ctx.srv, sid))).status, 400);
    assert.equal((await post(ctx.srv, sid, "4nope")).status, 400);
    c.send("4hello");
    assert.equal(await c.nextNonPing(), "4hello");
    await c.close();
  });

  test("ignores a second websocket with the same sid after the upgrade", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const c = await upgrade(ctx, sid);
    const c2 = await assertWsRefused(ctx, wsUrl(ctx.srv, sid));
    assert.equal(c2.queue.length, 0, "nothing sent to the second websocket");
    c.send("4hello");
    assert.equal(await c.nextNonPing(), "4hello");
    await c.close();
  });

  test("a second websocket for a websocket-only session is closed", async () => {
    const { client, open } = await ctx.wsOpen();
    await assertWsRefused(ctx, wsUrl(ctx.srv, open.sid));
    client.send("4alive");
    assert.equal(await client.nextNonPing(), "4alive");
    await client.close();
  });

  test("packets queued during the upgrade are delivered once, in order, over the websocket", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    // buffered before the upgrade starts (no GET pending)
    assert.equal((await post(ctx.srv, sid, "4early")).status, 200);
    const c = ctx.ws(wsUrl(ctx.srv, sid));
    await withTimeout(c.opened, 5000, "websocket open");
    c.send("2probe");
    assert.equal(await c.nextNonPing(), "3probe");
    const received = [];
    const poll = await request(pollUrl(ctx.srv, sid));
    assert.equal(poll.status, 200);
    // the GET during the upgrade ends with the noop; a server may flush what it had buffered
    // into it first (engine.io does), as long as nothing is delivered twice
    const pollPackets = withoutPings(poll.text);
    assert.ok(pollPackets.length > 0, "GET during upgrade answered");
    assert.ok(!pollPackets.slice(0, -1).includes("6"), `GET during upgrade: ${JSON.stringify(poll.text)}`);
    received.push(...pollPackets.filter((p) => p !== "6"));
    // echoes produced while upgrading, with no GET to carry them
    assert.equal((await post(ctx.srv, sid, `4m1${SEP}4m2${SEP}bAQID${SEP}4m3`)).status, 200);
    c.send("5");
    c.send("4after");
    for (;;) {
      const m = await c.nextNonPing();
      received.push(Buffer.isBuffer(m) ? "b" + m.toString("base64") : m);
      if (m === "4after") break;
    }
    assert.deepEqual(received, ["4early", "4m1", "4m2", "bAQID", "4m3", "4after"]);
    // nothing duplicated afterwards
    c.send("4last");
    assert.equal(await c.nextNonPing(), "4last");
    assert.deepEqual(c.queue.filter((m) => m !== "2"), []);
    await c.close();
  });

  test("a second probe websocket while the first is pending is refused", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const c = ctx.ws(wsUrl(ctx.srv, sid));
    await withTimeout(c.opened, 5000, "websocket open");
    c.send("2probe");
    assert.equal(await c.nextNonPing(), "3probe");
    const c2 = ctx.ws(wsUrl(ctx.srv, sid));
    c2.opened.then(() => c2.send("2probe")).catch(() => {});
    await c2.waitClosed(5000);
    assert.equal(c2.queue.filter((m) => m === "3probe").length, 0, "no probe answer on the second websocket");
    const poll = await request(pollUrl(ctx.srv, sid));
    assert.deepEqual(withoutPings(poll.text), ["6"]);
    c.send("5");
    c.send("4one");
    assert.equal(await c.nextNonPing(), "4one");
    await c.close();
  });

  test("a websocket dropped before 5 leaves the polling session usable", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const c = ctx.ws(wsUrl(ctx.srv, sid));
    await withTimeout(c.opened, 5000, "websocket open");
    c.send("2probe");
    assert.equal(await c.nextNonPing(), "3probe");
    await c.close();
    // wait until the server noticed; it must stay a polling session
    await waitUntil(async () => (await getStats(ctx.srv)).connections <= 1, { timeoutMs: 3000, what: "ws closed" });
    assert.equal((await post(ctx.srv, sid, "4still")).status, 200);
    const seen = [];
    for (let i = 0; i < 3 && !seen.includes("4still"); i++) {
      const g = await request(pollUrl(ctx.srv, sid));
      assert.equal(g.status, 200, `GET after an abandoned upgrade → ${g.status} ${g.text}`);
      seen.push(...withoutPings(g.text));
    }
    assert.deepEqual(seen.filter((p) => p !== "6"), ["4still"]);
    await closePolling(ctx.srv, sid);
  });

  test("a websocket reset mid-upgrade does not leak the session", async () => {
    await waitIdle(ctx.srv);
    const { sid } = await pollingHandshake(ctx.srv);
    const { response: g } = await parkedGet(ctx.srv, sid);
    const c = ctx.ws(wsUrl(ctx.srv, sid));
    await withTimeout(c.opened, 5000, "websocket open");
    c.send("2probe");
    assert.equal(await c.nextNonPing(), "3probe");
    c.reset();
    await g;
    // no pongs: the session ends by ping timeout at the latest
    await waitIdle(ctx.srv, { timeoutMs: 5000 });
  });
});

// ---------------------------------------------------------------------------------------------

group("maxPayload", RELAXED, (ctx) => {
  test("POST of exactly maxPayload bytes is accepted", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const body = "4" + "a".repeat(MAX_PAYLOAD - 1);
    const p = await post(ctx.srv, sid, body);
    assert.equal(p.status, 200);
    const g = await request(pollUrl(ctx.srv, sid));
    assert.deepEqual(withoutPings(g.text), [body]);
    await closePolling(ctx.srv, sid);
  });

  test("POST over maxPayload → 413 and the session is closed", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    const p = await post(ctx.srv, sid, "4" + "a".repeat(MAX_PAYLOAD));
    assert.equal(p.status, 413);
    assert.equal((await request(pollUrl(ctx.srv, sid))).status, 400);
  });

  test("chunked POST over maxPayload → 413 and the session is closed", async () => {
    const { sid } = await pollingHandshake(ctx.srv);
    let p;
    try {
      p = await request(pollUrl(ctx.srv, sid), {
        method: "POST",
        body: "4" + "a".repeat(MAX_PAYLOAD + 100000),
        chunked: 65536,
      });
    } catch (e) {
      // the server may close the connection after answering while the client still writes
      if (e.code !== "EPIPE" && e.code !== "ECONNRESET") throw e;
    }
    if (p) assert.equal(p.status, 413);
    assert.equal((await request(pollUrl(ctx.srv, sid))).status, 400);
  });

  test("websocket message over maxPayload closes the connection", async () => {
    const { client } = await ctx.wsOpen();
    client.send("4" + "a".repeat(MAX_PAYLOAD + 10));
    await client.waitClosed(5000);
  });
});

// ---------------------------------------------------------------------------------------------

function headerList(v) {
  return String(v ?? "")
    .split(",")
    .map((s) => s.trim().toUpperCase())
    .filter(Boolean);
}

group("CORS with --cors-origin http://example.test", [...RELAXED, "--cors-origin", "http://example.test"], (ctx) => {
  test("preflight from the allowed origin → 204 with the CORS headers", async () => {
    const r = await request(pollUrl(ctx.srv), {
      method: "OPTIONS",
      headers: {
        origin: "http://example.test",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
      },
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers["access-control-allow-origin"], "http://example.test");
    assert.equal(r.headers["access-control-allow-credentials"], "true");
    const methods = headerList(r.headers["access-control-allow-methods"]);
    for (const m of ["GET", "POST"]) assert.ok(methods.includes(m), `allowed methods ${methods}`);
  });

  test("the 204 preflight answer carries no Content-Length (RFC 9110 §8.6)", async () => {
    const r = await request(pollUrl(ctx.srv), {
      method: "OPTIONS",
      headers: { origin: "http://example.test", "access-control-request-method": "GET" },
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers["content-length"], undefined, "Content-Length on a 204");
    assert.equal(r.body.length, 0);
  });

  test("handshake and POST from the allowed origin carry the CORS headers", async () => {
    const headers = { origin: "http://example.test" };
    const r = await request(pollUrl(ctx.srv), { headers });
    assert.equal(r.status, 200);
    assert.equal(r.headers["access-control-allow-origin"], "http://example.test");
    assert.equal(r.headers["access-control-allow-credentials"], "true");
    const sid = JSON.parse(r.text.slice(1)).sid;
    const p = await post(ctx.srv, sid, "4x", headers);
    assert.equal(p.status, 200);
    assert.equal(p.headers["access-control-allow-origin"], "http://example.test");
    await closePolling(ctx.srv, sid);
  });

  test("a disallowed origin gets no Access-Control-Allow-Origin", async () => {
    const pre = await request(pollUrl(ctx.srv), {
      method: "OPTIONS",
      headers: { origin: "http://evil.test", "access-control-request-method": "POST" },
    });
    assert.equal(pre.headers["access-control-allow-origin"], undefined);
    const r = await request(pollUrl(ctx.srv), { headers: { origin: "http://evil.test" } });
    assert.equal(r.headers["access-control-allow-origin"], undefined);
    if (r.status === 200) await closePolling(ctx.srv, JSON.parse(r.text.slice(1)).sid);
  });
});

group("CORS with --cors-origin *", [...RELAXED, "--cors-origin", "*"], (ctx) => {
  test("any origin is allowed", async () => {
    const r = await request(pollUrl(ctx.srv), {
      method: "OPTIONS",
      headers: { origin: "http://anything.test", "access-control-request-method": "POST" },
    });
    assert.equal(r.status, 204);
    assert.ok(
      ["*", "http://anything.test"].includes(r.headers["access-control-allow-origin"]),
      `ACAO ${r.headers["access-control-allow-origin"]}`,
    );
    const g = await request(pollUrl(ctx.srv), { headers: { origin: "http://other.test" } });
    assert.equal(g.status, 200);
    assert.ok(["*", "http://other.test"].includes(g.headers["access-control-allow-origin"]));
    await closePolling(ctx.srv, JSON.parse(g.text.slice(1)).sid);
  });
});

group("--cookie", [...RELAXED, "--cookie"], (ctx) => {
  test("the polling handshake sets io=<sid>", async () => {
    const { sid, response } = await pollingHandshake(ctx.srv);
    const cookies = [].concat(response.headers["set-cookie"] ?? []);
    const io = cookies.find((c) => c.startsWith("io="));
    assert.ok(io, `Set-Cookie: ${JSON.stringify(cookies)}`);
    assert.equal(io.split(";")[0], `io=${sid}`);
    await closePolling(ctx.srv, sid);
  });
});
