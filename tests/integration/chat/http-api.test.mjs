// The HTTP API (docs/HTTP-API.md) against a real parley: REST posts reach Socket.IO, SSE
// and long-poll clients in one seq order with Socket.IO's own messages; SSE streams
// resume after Last-Event-ID with exactly what was missed; long-polls hold and answer;
// emits reach Socket.IO clients; every error path answers JSON {error, message} with its
// status. Requests go through node:http (utils' request), fetch and curl.
import { test, describe, before, beforeEach, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import net from "node:net";
import { promisify } from "node:util";
import { newRoom, newUser, request, serverPerSuite, startParley, health, waitUntil, signToken, nowS } from "./util.mjs";
import { SseStream } from "./sse.mjs";

const KEY = "test-api-key-0123456789";
const MAX_TEXT = 100;
const run = promisify(execFile);

const json = (r) => JSON.parse(r.text);
const keyHeaders = { "x-api-key": KEY, "content-type": "application/json" };

function post(srv, room, body, headers = keyHeaders) {
  return request(`${srv.url}/api/rooms/${encodeURIComponent(room)}/messages`, {
    method: "POST",
    body: typeof body === "string" ? body : JSON.stringify(body),
    headers,
  });
}

function getMessages(srv, room, query = "", headers = { "x-api-key": KEY }, timeoutMs = 5000) {
  return request(`${srv.url}/api/rooms/${encodeURIComponent(room)}/messages${query}`, { headers, timeoutMs });
}

function events(srv, room, query = "", headers = { "x-api-key": KEY }) {
  return SseStream.open(`${srv.url}/api/rooms/${encodeURIComponent(room)}/events${query}`, headers);
}

function assertError(r, status, error) {
  assert.equal(r.status, status, `status of ${r.text}`);
  assert.match(r.headers["content-type"], /^application\/json/);
  const body = json(r);
  assert.equal(body.error, error, r.text);
  assert.equal(typeof body.message, "string");
  assert.ok(body.message.length > 0);
}

describe("HTTP API", () => {
  const box = serverPerSuite({ before, after, afterEach }, () =>
    startParley([
      "--api-key",
      KEY,
      "--rate-burst",
      "1000",
      "--rate-per-sec",
      "1000",
      "--max-text",
      String(MAX_TEXT),
      "--sse-heartbeat",
      "1",
      "--cors-origins",
      "http://allowed.example",
    ]),
  );
  let srv, clients;
  const streams = [];
  beforeEach(() => {
    srv = box.srv;
    clients = box.clients;
  });
  afterEach(() => {
    for (const s of streams.splice(0)) s.close();
  });
  const track = (s) => {
    streams.push(s);
    return s;
  };

  test("a REST post by API key is durable, answered 201 and reaches Socket.IO members", async () => {
    const room = newRoom();
    const c = await clients.connect();
    await c.join(room);
    const r = await post(srv, room, { text: "from a backend" });
    assert.equal(r.status, 201, r.text);
    const ack = json(r);
    assert.deepEqual(Object.keys(ack).sort(), ["id", "seq", "timestamp"]);
    assert.equal(ack.seq, 1);
    const m = await c.rec.next("newMessage");
    assert.deepEqual(m, { id: ack.id, seq: 1, roomId: room, userId: "api", username: "api", text: "from a backend", timestamp: ack.timestamp });
    const named = json(await post(srv, room, { text: "bot says", userId: "deploy-bot", username: "Deploy bot" }));
    const m2 = await c.rec.next("newMessage");
    assert.equal(m2.seq, named.seq);
    assert.equal(m2.userId, "deploy-bot");
    assert.equal(m2.username, "Deploy bot");
    const hist = await c.ask("history", { roomId: room });
    assert.deepEqual(hist.messages.map((x) => x.text), ["from a backend", "bot says"]);
  });

  test("a REST post with a user JWT is attributed to the token's user, whatever the body says", async () => {
    const room = newRoom();
    const u = newUser("Zoë");
    const r = await post(srv, room, { text: "mine", userId: "someone-else", username: "Impostor" }, {
      authorization: `Bearer ${u.token}`,
      "content-type": "application/json; charset=utf-8",
    });
    assert.equal(r.status, 201, r.text);
    const [m] = json(await getMessages(srv, room));
    assert.equal(m.userId, u.userId);
    assert.equal(m.username, "Zoë");
  });

  test("REST, Socket.IO, SSE and long-poll clients see one seq order", async () => {
    const room = newRoom("order");
    const sio = await clients.connect();
    await sio.join(room);
    const sender = await clients.connect();
    await sender.join(room);
    const sse = track(await events(srv, room));
    assert.equal(sse.status, 200);
    assert.match(sse.headers["content-type"], /^text\/event-stream/);
    await waitUntil(async () => (await health(srv)).sseStreams >= 1, { what: "the stream registered" });

    // A long-poller that keeps asking from its last seq.
    const polled = [];
    let polling = true;
    const poller = (async () => {
      let after = 0;
      while (polling) {
        const r = await getMessages(srv, room, `?after=${after}&wait=2&limit=7`);
        assert.equal(r.status, 200, r.text);
        for (const m of json(r)) {
          polled.push(m);
          after = m.seq;
        }
      }
    })();

    const N = 40;
    const sends = [];
    for (let i = 0; i < N; i++) {
      sends.push(i % 2 ? sender.send(room, `sio ${i}`) : post(srv, room, { text: `rest ${i}` }).then((r) => assert.equal(r.status, 201)));
    }
    await Promise.all(sends);
    await sio.rec.waitCount("newMessage", N);
    await sse.waitMessages(N);
    await waitUntil(() => polled.length >= N, { what: "the poller to catch up" });
    polling = false;
    await poller;

    const seqs = (list) => list.map((m) => `${m.seq}:${m.id}`);
    const viaSio = sio.rec.of("newMessage");
    assert.deepEqual(viaSio.map((m) => m.seq), Array.from({ length: N }, (_, i) => i + 1));
    assert.deepEqual(seqs(sse.messages()), seqs(viaSio));
    assert.deepEqual(seqs(polled), seqs(viaSio));
    assert.deepEqual(sse.events.filter((e) => e.event === "newMessage").map((e) => e.id), viaSio.map((m) => String(m.seq)));
    assert.deepEqual(new Set(viaSio.map((m) => m.text.split(" ")[0])), new Set(["rest", "sio"]));
  });

  test("an SSE stream starts with a retry hint, sends heartbeats, and carries presence and receipts", async () => {
    const room = newRoom();
    const sse = track(await events(srv, room));
    assert.equal(sse.headers["cache-control"], "no-cache");
    await sse.until((s) => s.retry !== undefined && s.comments >= 1, 5000, "retry hint and a heartbeat");
    assert.equal(sse.retry, 2000);
    const a = await clients.connect(newUser("Ann"));
    await a.join(room);
    const joined = (await sse.until((s) => s.of("userJoined").length >= 1)).of("userJoined")[0];
    assert.deepEqual(joined, { userId: a.userId, username: "Ann", roomId: room });
    const ack = await a.send(room, "hello");
    await a.ask("typing", { roomId: room, isTyping: true });
    await a.ask("markRead", { roomId: room, messageIds: [ack.id] });
    await sse.until((s) => s.of("messagesRead").length >= 1);
    assert.deepEqual(sse.of("messagesRead")[0], { userId: a.userId, messageIds: [ack.id], roomId: room, lastReadSeq: ack.seq });
    await a.ask("leaveRoom", { roomId: room });
    await sse.until((s) => s.of("userLeft").length >= 1);
    assert.deepEqual(sse.events.map((e) => e.event), ["userJoined", "newMessage", "messagesRead", "userLeft"]);
    assert.equal(sse.events[1].id, String(ack.seq));
    // Presence events carry no id: the last event id stays the last message's.
    assert.equal(sse.lastEventId, String(ack.seq));
  });

  test("an SSE client dropped mid-stream resumes with exactly the missed messages", async () => {
    const room = newRoom("resume");
    for (let i = 1; i <= 5; i++) await post(srv, room, { text: `m${i}` });
    const first = track(await events(srv, room, "?lastEventId=0"));
    await first.waitMessages(5);
    assert.deepEqual(first.messages().map((m) => m.text), ["m1", "m2", "m3", "m4", "m5"]);
    await first.until((s) => s.lastEventId === "5");
    first.close();
    for (let i = 6; i <= 9; i++) await post(srv, room, { text: `m${i}` });
    // The header wins over the query parameter (a browser reconnects to the same URL).
    const again = track(await events(srv, room, "?lastEventId=1", { "x-api-key": KEY, "last-event-id": first.lastEventId }));
    await again.waitMessages(4);
    await post(srv, room, { text: "m10" });
    await again.waitMessages(5);
    assert.deepEqual(again.messages().map((m) => m.text), ["m6", "m7", "m8", "m9", "m10"]);
    assert.deepEqual(again.events.map((e) => e.id), ["6", "7", "8", "9", "10"]);
  });

  test("resuming from far back replays page after page, then goes live without a gap", async () => {
    const room = newRoom("replay");
    const N = 900; // two replay pages (and under the rate limit of 1,000)
    const sio = await clients.connect();
    await sio.join(room);
    const posts = [];
    for (let i = 1; i <= N; i++) posts.push(sio.ask("sendMessage", { roomId: room, text: `n${i}` }));
    // Subscribe while the messages are still being stored and announced.
    const sse = track(await events(srv, room, "?lastEventId=0"));
    await Promise.all(posts);
    await post(srv, room, { text: "live" });
    await sse.waitMessages(N + 1, 15000);
    assert.deepEqual(sse.messages().map((m) => m.seq), Array.from({ length: N + 1 }, (_, i) => i + 1));
    assert.equal(sse.messages().at(-1).text, "live");
  });

  test("long-poll: history after a seq, limit, and a held request answered by the next message", async () => {
    const room = newRoom("poll");
    assert.deepEqual(json(await getMessages(srv, room)), []);
    for (let i = 1; i <= 5; i++) await post(srv, room, { text: `p${i}` });
    assert.deepEqual(json(await getMessages(srv, room, "?after=1&limit=2")).map((m) => m.seq), [2, 3]);
    assert.deepEqual(json(await getMessages(srv, room, "?after=3")).map((m) => m.text), ["p4", "p5"]);
    const r0 = await getMessages(srv, room, "?after=5");
    assert.equal(r0.status, 200);
    assert.deepEqual(json(r0), []);

    const t0 = Date.now();
    const held = getMessages(srv, room, "?after=5&wait=10", { "x-api-key": KEY }, 15000);
    await waitUntil(async () => (await health(srv)).longPolls >= 1, { what: "the poll held" });
    await post(srv, room, { text: "p6" });
    const r = await held;
    assert.equal(r.status, 200);
    assert.deepEqual(json(r).map((m) => m.text), ["p6"]);
    assert.ok(Date.now() - t0 < 9000, "answered by the message, not the wait");
    assert.equal((await health(srv)).longPolls, 0);
  });

  test("long-poll: a wait that ends answers 200 []", async () => {
    const room = newRoom();
    await post(srv, room, { text: "only" });
    const t0 = Date.now();
    const r = await getMessages(srv, room, "?after=1&wait=1");
    const took = Date.now() - t0;
    assert.equal(r.status, 200);
    assert.deepEqual(json(r), []);
    assert.ok(took >= 900, `answered after ${took} ms`);
  });

  test("long-poll: a client that hangs up is forgotten; a POST whose client hangs up is still stored", async () => {
    const room = newRoom();
    const sock = net.connect(srv.port, "127.0.0.1");
    await new Promise((r) => sock.once("connect", r));
    sock.write(`GET /api/rooms/${room}/messages?wait=30 HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\n\r\n`);
    await waitUntil(async () => (await health(srv)).longPolls >= 1, { what: "the poll held" });
    sock.destroy();
    await waitUntil(async () => (await health(srv)).longPolls === 0, { what: "the poll dropped" });

    const body = JSON.stringify({ text: "fire and forget" });
    const s2 = net.connect(srv.port, "127.0.0.1");
    await new Promise((r) => s2.once("connect", r));
    s2.end(
      `POST /api/rooms/${room}/messages HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    s2.destroy();
    await waitUntil(async () => json(await getMessages(srv, room)).length === 1, { what: "the message stored" });
    assert.equal(json(await getMessages(srv, room))[0].text, "fire and forget");
  });

  test("members lists the distinct users present", async () => {
    const room = newRoom();
    const empty = json(await request(`${srv.url}/api/rooms/${room}/members`, { headers: { "x-api-key": KEY } }));
    assert.deepEqual(empty, { roomId: room, count: 0, members: [], memberships: [], lastSeq: 0 });
    const u = newUser();
    const a1 = await clients.connect(u);
    const a2 = await clients.connect(u);
    const b = await clients.connect();
    for (const c of [a1, a2, b]) await c.join(room);
    const r = await request(`${srv.url}/api/rooms/${room}/members`, { headers: { authorization: `Bearer ${newUser().token}` } });
    assert.equal(r.status, 200);
    const m = json(r);
    assert.equal(m.count, 2);
    assert.deepEqual(m.members.sort(), [a1.userId, b.userId].sort());
    // Every member, present or away (docs/MEMBERSHIP.md): b goes away and stays one.
    assert.deepEqual(m.memberships.map((x) => [x.userId, x.online]).sort(), [[a1.userId, true], [b.userId, true]].sort());
    b.close();
    await waitUntil(async () => json(await request(`${srv.url}/api/rooms/${room}/members`, { headers: { "x-api-key": KEY } })).count === 1, { what: "b gone" });
    const later = json(await request(`${srv.url}/api/rooms/${room}/members`, { headers: { "x-api-key": KEY } }));
    assert.deepEqual(later.memberships.map((x) => [x.userId, x.online]).sort(), [[a1.userId, true], [b.userId, false]].sort());
    assert.equal(later.memberships.find((x) => x.userId === b.userId).username, b.user.name);
  });

  test("POST /api/emit reaches the room's Socket.IO clients, or everyone", async () => {
    const room = newRoom();
    const inRoom = await clients.connect();
    await inRoom.join(room);
    const outside = await clients.connect();
    const emit = (body, headers = keyHeaders) =>
      request(`${srv.url}/api/emit`, { method: "POST", body: JSON.stringify(body), headers });
    let r = await emit({ room, event: "announcement", data: { text: "maintenance", n: 2 } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(json(r), { ok: true });
    assert.deepEqual(await inRoom.rec.next("announcement"), { text: "maintenance", n: 2 });
    r = await emit({ event: "everyone" });
    assert.equal(r.status, 200);
    await inRoom.rec.waitCount("everyone", 1);
    await outside.rec.waitCount("everyone", 1);
    // No data, no argument (with connection state recovery on, socket.io appends the
    // packet's offset, a string, as the last argument).
    assert.ok(outside.rec.argsOf("everyone")[0].every((a) => typeof a === "string"));
    await outside.flush();
    assert.equal(outside.rec.count("announcement"), 0);

    assertError(await emit({ event: "x", namespace: "/nope" }), 404, "not_found");
    assertError(await emit({ event: "disconnect" }), 400, "invalid_payload");
    assertError(await emit({ data: 1 }), 400, "invalid_payload");
    assertError(await emit({ event: "x", rooms: "lobby" }), 400, "invalid_payload");
    assertError(await emit({ event: "x", rooms: [1] }), 400, "invalid_payload");
    assertError(await emit({ event: "x\u0000y" }), 400, "invalid_payload");
    assertError(await emit({ event: "x" }, { authorization: `Bearer ${newUser().token}`, "content-type": "application/json" }), 403, "forbidden");
  });

  test("room ids are percent-decoded; a socket's own rooms are not chat rooms", async () => {
    const room = "café / ☕ #1";
    const c = await clients.connect();
    await c.join(room);
    assert.equal((await post(srv, room, { text: "é" })).status, 201);
    assert.equal((await c.rec.next("newMessage")).roomId, room);
    assertError(await getMessages(srv, `user:${c.userId}`), 404, "not_found");
    assertError(await getMessages(srv, c.s.id), 404, "not_found");
    assertError(await getMessages(srv, "a\u0001b"), 400, "invalid_payload");
    assertError(await getMessages(srv, "x".repeat(129)), 400, "invalid_payload");
    assertError(await getMessages(srv, "x".repeat(400)), 400, "invalid_payload");
    // Percent-encoding that is malformed, or decodes to a NUL, is a bad id (not a prefix of it).
    for (const raw of ["%", "%zz", "a%00b", "a%2"]) {
      assertError(await request(`${srv.url}/api/rooms/${raw}/messages`, { headers: { "x-api-key": KEY } }), 400, "invalid_payload");
    }
  });

  test("error answers: 400, 401, 404, 405, 413, 415", async () => {
    const room = newRoom();
    assertError(await post(srv, room, "{not json"), 400, "bad_json");
    assertError(await post(srv, room, "[1,2]"), 400, "bad_json");
    assertError(await post(srv, room, { text: 42 }), 400, "invalid_payload");
    assertError(await post(srv, room, { text: "" }), 400, "invalid_payload");
    assertError(await post(srv, room, {}), 400, "invalid_payload");
    assertError(await post(srv, room, { text: "x".repeat(MAX_TEXT + 1) }), 400, "too_long");
    assert.equal((await post(srv, room, { text: "☕".repeat(MAX_TEXT) })).status, 201);
    // Text may hold a NUL, as over Socket.IO; it comes back exactly.
    assert.equal((await post(srv, room, { text: "a\u0000b" })).status, 201);
    assertError(await post(srv, room, { text: "x", userId: "" }), 400, "invalid_payload");
    assertError(await post(srv, room, { text: "x", userId: "bad\nid" }), 400, "invalid_payload");
    assertError(await post(srv, room, { text: "x", userId: "bad\u0000id" }), 400, "invalid_payload");
    // A JSON nesting bomb under the size limit is refused by the parser, not the stack.
    assertError(await post(srv, room, `{"text":${"[".repeat(30000)}${"]".repeat(30000)}}`), 400, "bad_json");
    for (const q of ["?limit=0", "?limit=101", "?after=-1", "?after=x", "?wait=31"]) {
      assertError(await getMessages(srv, room, q), 400, "invalid_payload");
    }
    const badId = await events(srv, room, "", { "x-api-key": KEY, "last-event-id": "abc" });
    await badId.waitEnd();
    assert.equal(badId.status, 400);
    assert.equal(JSON.parse(badId.body).error, "invalid_payload");

    const none = await getMessages(srv, room, "", {});
    assertError(none, 401, "unauthorized");
    assert.match(none.headers["www-authenticate"], /^Bearer/);
    assertError(await getMessages(srv, room, "", { "x-api-key": "wrong" }), 401, "unauthorized");
    assertError(await getMessages(srv, room, "", { authorization: "Bearer not.a.jwt" }), 401, "unauthorized");
    assertError(await getMessages(srv, room, "", { authorization: "Basic abc" }), 401, "unauthorized");
    const expired = signToken({ sub: "u-old", exp: nowS() - 3600 });
    assertError(await getMessages(srv, room, `?token=${expired}`, {}), 401, "unauthorized");
    const noneAlg = signToken({ sub: "u-x" }, { header: { alg: "none", typ: "JWT" }, hash: null });
    assertError(await getMessages(srv, room, "", { authorization: `Bearer ${noneAlg}` }), 401, "unauthorized");
    assert.equal((await getMessages(srv, room, `?token=${encodeURIComponent(newUser().token)}`, {})).status, 200);
    assert.equal((await getMessages(srv, room, "", { authorization: `Bearer ${KEY}` })).status, 200);

    assertError(await request(`${srv.url}/api/nothing`, { headers: { "x-api-key": KEY } }), 404, "not_found");
    assertError(await request(`${srv.url}/api/rooms/${room}/other`, { headers: { "x-api-key": KEY } }), 404, "not_found");
    assertError(await request(`${srv.url}/api/rooms/${room}`, { headers: { "x-api-key": KEY } }), 404, "not_found");
    const del = await request(`${srv.url}/api/rooms/${room}/messages`, { method: "DELETE", headers: { "x-api-key": KEY } });
    assertError(del, 405, "method_not_allowed");
    assert.equal(del.headers.allow, "GET, POST");
    assert.equal((await request(`${srv.url}/api/emit`, { headers: { "x-api-key": KEY } })).headers.allow, "POST");

    assertError(await post(srv, room, JSON.stringify({ text: "x" }), { "x-api-key": KEY, "content-type": "text/plain" }), 415, "unsupported_media_type");
    assertError(await post(srv, room, JSON.stringify({ text: "x" }), { "x-api-key": KEY }), 415, "unsupported_media_type");
    const big = JSON.stringify({ text: "x", pad: "y".repeat(70000) });
    assertError(await post(srv, room, big), 413, "too_large");
    // Past the HTTP server's own limit (1 MiB) the body is not read: 413, then the close.
    const huge = await new Promise((resolve, reject) => {
      const s = net.connect(srv.port, "127.0.0.1");
      let text = "";
      s.on("data", (d) => (text += d));
      s.on("close", () => resolve(text));
      s.on("error", reject);
      s.write(`POST /api/rooms/${room}/messages HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n{"text":`);
    });
    assert.match(huge, /^HTTP\/1\.1 413 /);
    assert.match(huge, /"error":"too_large"/);
    // Nothing of the refused posts was stored.
    assert.deepEqual(json(await getMessages(srv, room)).map((m) => m.text), ["☕".repeat(MAX_TEXT), "a\u0000b"]);
  });

  test("CORS: allowed origins get the headers and a preflight answer; others do not", async () => {
    const room = newRoom();
    const pre = await request(`${srv.url}/api/rooms/${room}/messages`, {
      method: "OPTIONS",
      headers: { origin: "http://allowed.example", "access-control-request-method": "POST" },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers["access-control-allow-origin"], "http://allowed.example");
    assert.match(pre.headers["access-control-allow-methods"], /POST/);
    assert.match(pre.headers["access-control-allow-headers"], /Authorization/i);
    assert.match(pre.headers["access-control-allow-headers"], /Last-Event-ID/i);
    const ok = await getMessages(srv, room, "", { "x-api-key": KEY, origin: "http://allowed.example" });
    assert.equal(ok.headers["access-control-allow-origin"], "http://allowed.example");
    const sse = track(await events(srv, room, "", { "x-api-key": KEY, origin: "http://allowed.example" }));
    assert.equal(sse.headers["access-control-allow-origin"], "http://allowed.example");
    const other = await getMessages(srv, room, "", { "x-api-key": KEY, origin: "http://evil.example" });
    assert.equal(other.status, 200);
    assert.equal(other.headers["access-control-allow-origin"], undefined);
  });

  test("with fetch and curl", async () => {
    const room = newRoom();
    const r = await fetch(`${srv.url}/api/rooms/${room}/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ text: "via fetch" }),
    });
    assert.equal(r.status, 201);
    const { stdout } = await run("curl", ["-s", "-w", "\n%{http_code}", "-H", `X-API-Key: ${KEY}`, `${srv.url}/api/rooms/${room}/messages?after=0`]);
    const [body, code] = stdout.split("\n");
    assert.equal(code, "200");
    assert.equal(JSON.parse(body)[0].text, "via fetch");
    const sse = await run("curl", ["-s", "-N", "-m", "1", "-H", `X-API-Key: ${KEY}`, `${srv.url}/api/rooms/${room}/events?lastEventId=0`]).catch((e) => e);
    assert.match(sse.stdout, /^retry: 2000\n\nid: 1\nevent: newMessage\ndata: \{.*"text":"via fetch".*\}\n\n/);
  });
});

describe("HTTP API: rate limits and room claims", () => {
  const box = serverPerSuite({ before, after, afterEach }, () =>
    startParley(["--api-key", KEY, "--rate-burst", "2", "--rate-per-sec", "1", "--room-claim", "rooms", "--store", "memory"]),
  );

  test("a user's REST posts are rate limited (429 + Retry-After); the API key is not", async () => {
    const srv = box.srv;
    const room = newRoom();
    const u = newUser(undefined, { rooms: ["*"] });
    const h = { authorization: `Bearer ${u.token}`, "content-type": "application/json" };
    assert.equal((await post(srv, room, { text: "1" }, h)).status, 201);
    assert.equal((await post(srv, room, { text: "2" }, h)).status, 201);
    const limited = await post(srv, room, { text: "3" }, h);
    assertError(limited, 429, "rate_limited");
    assert.ok(Number(limited.headers["retry-after"]) >= 1);
    // The same user through another token is the same bucket.
    const again = signToken({ sub: u.userId, rooms: ["*"], exp: nowS() + 60 });
    assertError(await post(srv, room, { text: "4" }, { ...h, authorization: `Bearer ${again}` }), 429, "rate_limited");
    for (let i = 0; i < 10; i++) assert.equal((await post(srv, room, { text: `k${i}` })).status, 201);
    assert.deepEqual(json(await getMessages(srv, room)).map((m) => m.text), ["1", "2", ...Array.from({ length: 10 }, (_, i) => `k${i}`)]);
  });

  test("--room-claim restricts tokens to their rooms, over HTTP and Socket.IO", async () => {
    const srv = box.srv;
    const u = newUser(undefined, { rooms: ["green"] });
    const h = { authorization: `Bearer ${u.token}` };
    assert.equal((await getMessages(srv, "green", "", h)).status, 200);
    assertError(await getMessages(srv, "red", "", h), 403, "forbidden");
    const red = await events(srv, "red", "", h);
    await red.waitEnd();
    assert.equal(red.status, 403);
    assertError(await post(srv, "red", { text: "x" }, { ...h, "content-type": "application/json" }), 403, "forbidden");
    const noClaim = newUser();
    assertError(await getMessages(srv, "green", "", { authorization: `Bearer ${noClaim.token}` }), 403, "forbidden");
    assert.equal((await getMessages(srv, "red")).status, 200, "the API key is not restricted");

    const c = await box.clients.connect(u);
    assert.equal((await c.ask("joinRoom", { roomId: "green" })).ok, true);
    assert.deepEqual(await c.ask("joinRoom", { roomId: "red" }), { ok: false, error: "forbidden" });
    const d = await box.clients.connect(newUser(undefined, { rooms: ["*"] }));
    assert.equal((await d.ask("joinRoom", { roomId: "red" })).ok, true);
  });
});
