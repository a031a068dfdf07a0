// Notifications for offline members (docs/NOTIFY.md, docs/MEMBERSHIP.md; src/chat/notify.c
// and the service's "notifications for offline members"), against a real webhook receiver:
// a node:http server on 127.0.0.1 that this file starts, records every request with its
// raw body, and answers as each test says (200, 500, 400, or holds the request).
//
// What is asserted: who is owed (the room's members not present in it anywhere, never the
// sender; nobody who left with forget; a user back in the room before the window ends gets
// nothing), what is sent (one signed request per user and room, the messages as broadcast
// in seq order, unread, urgent), when (at the window's end; at once for a mention or a
// direct message), and what the answers do (500 and a stalled request are retried with
// the same batch, 400 is not; with the receiver down the queue stays within --notify-queue,
// the oldest dropped and counted in /metrics).
//
// "Nothing was sent to X" is proven against a control: another offline member of the same
// room, owed the same message, whose request comes at the same window's end; X is checked
// after that request arrived and a margin more. With PARLEY_TEST_WORKERS=3 the sender's
// worker notifies and presence comes from the other workers: the waits below settle it
// first (userJoined / userLeft heard by the sender, then a round trip through the store
// owner), and /metrics is the sum over the workers.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import { after, afterEach, before, describe, test } from "node:test";

import { Checks, pollUntil } from "../lib/wait.mjs";
import { newRoom, newUser, request, serverPerSuite, sleep, startParley } from "./util.mjs";

const SANITIZED = process.env.PARLEY_SANITIZE === "1";
// ms a due batch may take to reach the receiver, and the margin kept after a control's
// request before "nothing for X" is asserted.
const SLACK = SANITIZED ? 1500 : 700;
const SECRET_N = "notify-test-secret-3f9c1a";
const HOOK_PATH = "/hooks/parley";
// The notifier's constants this file depends on (src/chat/notify.c defaults, not options).
const TIMEOUT_MS = 5000;
const BACKOFF_MS = 1000;
const JITTER = 0.2;

const sleepUntil = (t) => sleep(Math.max(0, t - Date.now()));

// ---- the receiver ----

class Receiver {
  constructor() {
    this.requests = []; // {at, method, url, headers, raw, body, status, held, closedAt}
    this.checks = new Checks();
    this.answer = () => 200; // (request record) → a status, or "hold" (never answered)
    this.held = [];
  }

  start(port = 0) {
    this.server = http.createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        const raw = Buffer.concat(chunks);
        let body;
        try {
          body = JSON.parse(raw.toString("utf8"));
        } catch {
          body = undefined;
        }
        const rec = { at: Date.now(), method: req.method, url: req.url, headers: req.headers, raw, body };
        this.requests.push(rec);
        const a = this.answer(rec);
        if (a === "hold") {
          rec.held = true;
          this.held.push(res);
          res.on("close", () => {
            rec.closedAt = Date.now();
            this.checks.notify();
          });
        } else {
          rec.status = a;
          res.writeHead(a, { "content-type": "text/plain", "content-length": 0 }).end();
        }
        this.checks.notify();
      });
    });
    // Parley keeps connections alive: an idle one closed under it would cost an attempt.
    this.server.keepAliveTimeout = 60000;
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, "127.0.0.1", () => resolve(this));
    });
  }

  get port() {
    return this.server.address().port;
  }

  // The requests for one user.
  of(userId) {
    return this.requests.filter((r) => r.body?.userId === userId);
  }

  // The last requests, for failure messages.
  summary() {
    return this.requests.slice(-30).map((r) => `${r.body?.userId}/${r.body?.roomId}@${r.at}:${r.held ? "held" : r.status}`).join(", ");
  }

  // Resolves once pred() holds (re-checked on each request), bounded.
  until(pred, ms, what) {
    return this.checks.wait(
      () => pred() || undefined,
      ms,
      () => `timed out after ${ms} ms waiting for ${what}; received [${this.summary()}]`,
    );
  }

  async stop() {
    if (!this.server) return;
    for (const res of this.held) res.destroy();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
    this.server = undefined;
  }
}

// A port with nothing listening on it (it was free a moment ago).
async function freePort() {
  const s = http.createServer();
  await new Promise((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

// Checks one request as the receiver of docs/NOTIFY.md does: POST, JSON, and the
// X-Parley-Signature of its raw body, with a recent t.
function assertSigned(rec, secret = SECRET_N) {
  assert.equal(rec.method, "POST");
  assert.equal(rec.url, HOOK_PATH);
  assert.match(rec.headers["content-type"] ?? "", /^application\/json/);
  const header = rec.headers["x-parley-signature"];
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? "");
  assert.ok(m, `X-Parley-Signature is t=<s>,v1=<64 hex>: ${header}`);
  const skew = Math.abs(rec.at / 1000 - Number(m[1]));
  assert.ok(skew <= 5, `t=${m[1]} is recent (received at ${rec.at / 1000})`);
  const want = crypto.createHmac("sha256", secret).update(`${m[1]}.`).update(rec.raw).digest();
  assert.ok(crypto.timingSafeEqual(want, Buffer.from(m[2], "hex")), "v1 is HMAC-SHA256(secret, t + '.' + body)");
  const other = crypto.createHmac("sha256", `${secret}x`).update(`${m[1]}.`).update(rec.raw).digest();
  assert.ok(!crypto.timingSafeEqual(other, Buffer.from(m[2], "hex")), "another secret does not verify");
}

// ---- metrics ----

async function metrics(srv) {
  const r = await request(`${srv.url}/metrics`);
  assert.equal(r.status, 200, r.text);
  const series = new Map();
  for (const line of r.text.split("\n")) {
    const m = /^(parley_notify_\S+?(?:\{.*\})?) (\S+)$/.exec(line);
    if (m) series.set(m[1], Number(m[2]));
  }
  return series;
}

const SENT = "parley_notify_sent_total";
const DROPPED = "parley_notify_dropped_total";
const SKIPPED = "parley_notify_skipped_total";
const QUEUE = "parley_notify_queue";
const REJECTED = 'parley_notify_failed_total{reason="rejected"}';

function metric(series, name) {
  assert.ok(series.has(name), `/metrics has ${name}: ${[...series.keys()].join(", ")}`);
  return series.get(name);
}

// ---- rooms and members ----

// Each user connected and in room; returns the clients.
async function joinAll(clients, room, users) {
  const out = [];
  for (const u of users) {
    const c = await clients.connect(u);
    await c.join(room);
    out.push(c);
  }
  return out;
}

// watcher heard `ev` about every one of users in room; then a round trip through the store
// owner, so that the watcher's worker has the presence news too (util.mjs, Client.flush).
async function heard(watcher, ev, room, users) {
  await watcher.rec.until(
    () => users.every((u) => watcher.rec.of(ev).some((e) => e.userId === u.userId && e.roomId === room)),
    5000,
    `${ev} of ${users.map((u) => u.userId).join(", ")} in ${room}`,
  );
  await watcher.flush();
}

// Disconnects cs (members of room) and waits until watcher's process knows they left.
async function goOffline(clients, watcher, room, cs) {
  for (const c of cs) clients.closeOne(c);
  await heard(watcher, "userLeft", room, cs);
}

// The newMessage objects watcher received in room, in seq order (n of them, awaited).
async function broadcastIn(watcher, room, n) {
  const of = () => watcher.rec.of("newMessage").filter((m) => m.roomId === room);
  await watcher.rec.until(() => of().length >= n, 5000, `${n} newMessage in ${room}`);
  return of().sort((x, y) => x.seq - y.seq);
}

// ---- the suites ----

describe("notifications for offline members", () => {
  const WINDOW = 1000;
  const recv = new Receiver();
  before(() => recv.start());
  const box = serverPerSuite({ before, after, afterEach }, () =>
    startParley([
      "--notify-url",
      `http://127.0.0.1:${recv.port}${HOOK_PATH}`,
      "--notify-secret",
      SECRET_N,
      "--notify-window-ms",
      String(WINDOW),
    ]),
  );
  afterEach(() => {
    recv.answer = () => 200;
  });
  after(() => recv.stop());

  test("one signed batch per offline member, after the window, never to the sender", async () => {
    const { clients } = box;
    const room = newRoom("notify");
    const [a, b, c] = await joinAll(clients, room, [newUser("ann"), newUser("bea"), newUser("cid")]);
    await goOffline(clients, a, room, [b, c]);

    const t0 = Date.now();
    const acks = [];
    for (const text of ["one", "two", "three"]) acks.push(await a.send(room, text));
    const sent = await broadcastIn(a, room, 3);
    assert.deepEqual(
      sent.map((m) => m.id),
      acks.map((k) => k.id),
    );
    await recv.until(() => recv.of(b.userId).length && recv.of(c.userId).length, 2 * WINDOW + SLACK, "B's and C's batches");
    await sleepUntil(t0 + 2 * WINDOW + SLACK); // a couple of windows: nothing more comes

    for (const u of [b, c]) {
      const got = recv.of(u.userId);
      assert.equal(got.length, 1, `one request for ${u.user.name}: [${recv.summary()}]`);
      const r = got[0];
      assertSigned(r);
      assert.deepEqual(r.body, { userId: u.userId, roomId: room, messages: sent, unread: 3, urgent: false });
      assert.ok(r.at >= t0 + WINDOW - 20, `sent at the window's end (${r.at - t0} ms after the first message)`);
    }
    assert.equal(recv.of(a.userId).length, 0, "nothing for the sender");
  });

  test("a member present in the room gets nothing; one connected but not in the room does", async () => {
    const { clients } = box;
    const room = newRoom("notify-online");
    const [a, b, c, d] = await joinAll(clients, room, [newUser("ann"), newUser("bea"), newUser("cid"), newUser("dee")]);
    // d stays connected but leaves the live room (still a member): not present in it.
    assert.deepEqual(await d.ask("leaveRoom", { roomId: room }), { ok: true });
    await heard(a, "userLeft", room, [d]);
    await goOffline(clients, a, room, [c]);

    const ack = await a.send(room, "are you there?");
    const [msg] = await broadcastIn(a, room, 1);
    assert.equal(msg.id, ack.id);
    await recv.until(() => recv.of(c.userId).length && recv.of(d.userId).length, WINDOW + SLACK, "C's and D's batches");
    await sleep(SLACK);

    assert.equal(recv.of(b.userId).length, 0, "nothing for B, present in the room");
    assert.equal(recv.of(a.userId).length, 0, "nothing for the sender");
    for (const u of [c, d]) {
      assert.equal(recv.of(u.userId).length, 1);
      assertSigned(recv.of(u.userId)[0]);
      assert.deepEqual(recv.of(u.userId)[0].body, { userId: u.userId, roomId: room, messages: [msg], unread: 1, urgent: false });
    }
  });

  test("a member back in the room before the window ends gets nothing", async () => {
    const { srv, clients } = box;
    const room = newRoom("notify-back");
    const [a, b, c] = await joinAll(clients, room, [newUser("ann"), newUser("bea"), newUser("cid")]);
    await goOffline(clients, a, room, [b, c]);
    const skipped = metric(await metrics(srv), SKIPPED);

    const t0 = Date.now();
    await a.send(room, "missed you");
    const again = await clients.connect(b.user);
    await again.join(room);
    await heard(a, "userJoined", room, [b]);
    const back = Date.now() - t0;
    assert.ok(back < WINDOW - 200, `B was back ${back} ms after the message, within the ${WINDOW} ms window`);

    await recv.until(() => recv.of(c.userId).length, WINDOW + SLACK, "C's batch (the control)");
    await sleep(SLACK);
    assert.equal(recv.of(b.userId).length, 0, `nothing for B, back in the room: [${recv.summary()}]`);
    assert.equal(recv.of(c.userId).length, 1);
    // Present when the room's window closed, B was never owed it (the service batches per
    // room and looks at presence then): nothing reached the notifier to skip.
    assert.equal(metric(await metrics(srv), SKIPPED) - skipped, 0, "B's batch never made");
  });

  test("a member who left with forget:true is not notified", async () => {
    const { clients } = box;
    const room = newRoom("notify-forget");
    const [a, b, c] = await joinAll(clients, room, [newUser("ann"), newUser("bea"), newUser("cid")]);
    // A first message while everybody is present: the members are read (and may be cached).
    const before = await a.send(room, "before");
    assert.deepEqual(await b.ask("leaveRoom", { roomId: room, forget: true }), { ok: true });
    await heard(a, "userLeft", room, [b]);
    await goOffline(clients, a, room, [b, c]);

    const ack = await a.send(room, "after");
    await recv.until(() => recv.of(c.userId).length, WINDOW + SLACK, "C's batch (the control)");
    await sleep(SLACK);
    assert.equal(recv.of(b.userId).length, 0, `nothing for B, who forgot the room: [${recv.summary()}]`);
    const [r] = recv.of(c.userId);
    assertSigned(r);
    // C, offline when the window closed, is owed what it has not read: "before" too (it was
    // connected then but never marked it read; docs/MEMBERSHIP.md).
    assert.deepEqual(
      r.body.messages.map((m) => m.id),
      [before.id, ack.id],
    );
    assert.equal(r.body.unread, 2, "C read nothing: both messages unread");
  });

  test("a member who posts over HTTP while offline is not owed their own message", async () => {
    const { srv, clients } = box;
    const room = newRoom("notify-http");
    const [a, b, c] = await joinAll(clients, room, [newUser("ann"), newUser("bea"), newUser("cid")]);
    await goOffline(clients, a, room, [b, c]);

    const r = await request(`${srv.url}/api/rooms/${encodeURIComponent(room)}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${b.user.token}` },
      body: JSON.stringify({ text: "posted by B" }),
    });
    assert.equal(r.status, 201, r.text);
    const posted = JSON.parse(r.text);
    const [msg] = await broadcastIn(a, room, 1);
    assert.equal(msg.id, posted.id);
    assert.equal(msg.userId, b.userId);

    await recv.until(() => recv.of(c.userId).length, WINDOW + SLACK, "C's batch (the control)");
    await sleep(SLACK);
    assert.equal(recv.of(b.userId).length, 0, "nothing for B, the sender");
    assert.equal(recv.of(a.userId).length, 0, "nothing for A, present");
    assert.deepEqual(recv.of(c.userId)[0].body, { userId: c.userId, roomId: room, messages: [msg], unread: 1, urgent: false });
  });

  test("a 500 is retried after the backoff with the same batch, then delivered", async () => {
    const { srv, clients } = box;
    const room = newRoom("notify-500");
    const [a, x] = await joinAll(clients, room, [newUser("ann"), newUser("xan")]);
    await goOffline(clients, a, room, [x]);
    recv.answer = (rec) => (rec.body?.userId === x.userId && recv.of(x.userId).length === 1 ? 500 : 200);
    const before_ = await metrics(srv);

    await a.send(room, "first");
    await a.send(room, "second");
    const sent = await broadcastIn(a, room, 2);
    const limit = WINDOW + BACKOFF_MS * (1 + JITTER) + 2 * SLACK;
    await recv.until(() => recv.of(x.userId).length >= 2, limit, "X's batch twice");

    const [first, second] = recv.of(x.userId);
    assert.equal(first.status, 500);
    assert.equal(second.status, 200);
    for (const r of [first, second]) {
      assertSigned(r);
      assert.deepEqual(r.body, { userId: x.userId, roomId: room, messages: sent, unread: 2, urgent: false });
    }
    const gap = second.at - first.at;
    assert.ok(gap >= BACKOFF_MS * (1 - JITTER) - 20, `retried after the backoff (${gap} ms)`);
    assert.ok(gap <= BACKOFF_MS * (1 + JITTER) + SLACK, `retried after the first backoff (${gap} ms)`);

    await sleep(200);
    const after_ = await metrics(srv);
    assert.equal(metric(after_, SENT) - metric(before_, SENT), 1, "delivered once");
    assert.equal(metric(after_, QUEUE), 0, "nothing waits for another retry");
    assert.equal(recv.of(x.userId).length, 2);
  });

  test("a request stalled past the timeout is retried and delivered", async () => {
    const { clients } = box;
    const room = newRoom("notify-stall");
    const [a, x] = await joinAll(clients, room, [newUser("ann"), newUser("xan")]);
    await goOffline(clients, a, room, [x]);
    recv.answer = (rec) => (rec.body?.userId === x.userId && recv.of(x.userId).length === 1 ? "hold" : 200);

    await a.send(room, "hello?");
    const sent = await broadcastIn(a, room, 1);
    const limit = WINDOW + TIMEOUT_MS + BACKOFF_MS * (1 + JITTER) + 2 * SLACK;
    await recv.until(() => recv.of(x.userId).length >= 2, limit, "X's batch again after the stall");

    const [first, second] = recv.of(x.userId);
    assert.ok(first.held);
    assert.ok(first.closedAt !== undefined, "Parley gave up the stalled request (closed its connection)");
    const waited = first.closedAt - first.at;
    assert.ok(waited >= TIMEOUT_MS - 300 && waited <= TIMEOUT_MS + SLACK, `closed after the ${TIMEOUT_MS} ms timeout (${waited} ms)`);
    const gap = second.at - first.closedAt;
    assert.ok(gap >= BACKOFF_MS * (1 - JITTER) - 20, `retried after the backoff (${gap} ms after the timeout)`);
    assert.equal(second.status, 200);
    for (const r of [first, second]) {
      assertSigned(r);
      assert.deepEqual(r.body, { userId: x.userId, roomId: room, messages: sent, unread: 1, urgent: false });
    }
  });

  test("a 400 is not retried", async () => {
    const { srv, clients } = box;
    const room = newRoom("notify-400");
    const [a, x] = await joinAll(clients, room, [newUser("ann"), newUser("xan")]);
    await goOffline(clients, a, room, [x]);
    recv.answer = (rec) => (rec.body?.userId === x.userId ? 400 : 200);
    const rejected = metric(await metrics(srv), REJECTED);

    await a.send(room, "refuse me");
    await recv.until(() => recv.of(x.userId).length, WINDOW + SLACK, "X's batch");
    // Past the latest time a first retry would come.
    await sleep(BACKOFF_MS * (1 + JITTER) + SLACK);
    assert.equal(recv.of(x.userId).length, 1, `one attempt only: [${recv.summary()}]`);
    assert.equal(recv.of(x.userId)[0].status, 400);
    assert.equal(metric(await metrics(srv), REJECTED) - rejected, 1, "counted as rejected");
  });
});

describe("urgent notifications: mentions and direct messages", () => {
  const WINDOW = 5000;
  const recv = new Receiver();
  before(() => recv.start());
  // The secret from the environment this time.
  const box = serverPerSuite({ before, after, afterEach }, () =>
    startParley(["--notify-url", `http://127.0.0.1:${recv.port}${HOOK_PATH}`, "--notify-window-ms", String(WINDOW)], {
      env: { PARLEY_NOTIFY_SECRET: SECRET_N },
    }),
  );
  after(() => recv.stop());

  test("a mention sends the mentioned member's batch at once; the others wait for the window", async () => {
    const { clients } = box;
    const room = newRoom("notify-mention");
    const [a, b, c] = await joinAll(clients, room, [newUser("ann"), newUser("bob"), newUser("cid")]);
    await goOffline(clients, a, room, [b, c]);

    const t0 = Date.now();
    await a.send(room, "mail bob@example.com later"); // not a mention: part of a word
    await a.send(room, "ping @bob, lunch?");
    const tMention = Date.now();
    const sent = await broadcastIn(a, room, 2);
    await recv.until(() => recv.of(b.userId).length, 1000 + SLACK, "B's urgent batch");
    const r = recv.of(b.userId)[0];
    assert.ok(r.at - tMention < 1000, `B's batch came ${r.at - tMention} ms after the mention, not at the ${WINDOW} ms window's end`);
    assertSigned(r);
    assert.deepEqual(r.body, { userId: b.userId, roomId: room, messages: sent, unread: 2, urgent: true });
    assert.equal(recv.of(c.userId).length, 0, "C's batch still waits for its window");

    await recv.until(() => recv.of(c.userId).length, WINDOW + SLACK, "C's batch at the window's end");
    const rc = recv.of(c.userId)[0];
    assert.ok(rc.at >= t0 + WINDOW - 20, `C's batch at the window's end (${rc.at - t0} ms)`);
    assert.deepEqual(rc.body, { userId: c.userId, roomId: room, messages: sent, unread: 2, urgent: false });
    assert.equal(recv.of(b.userId).length, 1, "B's batch was sent once");
  });

  test("a direct message to a user with no connection is sent at once, with roomId null", async () => {
    const { clients } = box;
    const room = newRoom("notify-dm");
    const [a] = await joinAll(clients, room, [newUser("ann")]);
    const y = newUser("yan"); // online: connected (in no room)
    const yc = await clients.connect(y);
    await a.flush(); // y's user room is counted on a's process too
    const z = newUser("zed"); // never connected

    assert.deepEqual(await a.ask("sendDirect", { toUserId: y.userId, text: "online?" }), { ok: true });
    const dmY = await yc.rec.next("directMessage");
    assert.equal(dmY.text, "online?");
    const t = Date.now();
    assert.deepEqual(await a.ask("sendDirect", { toUserId: z.userId, text: "call me" }), { ok: true });
    await recv.until(() => recv.of(z.userId).length, 1000 + SLACK, "Z's urgent direct message");
    const r = recv.of(z.userId)[0];
    assert.ok(r.at - t < 1000, `sent ${r.at - t} ms after the direct message, not at the window's end`);
    assertSigned(r);
    const { messages, ...rest } = r.body;
    assert.deepEqual(rest, { userId: z.userId, roomId: null, unread: 0, urgent: true });
    assert.equal(messages.length, 1);
    const { timestamp, ...dm } = messages[0];
    assert.deepEqual(dm, { from: a.userId, fromName: "ann", to: z.userId, text: "call me" });
    assert.ok(Number.isInteger(timestamp) && Math.abs(timestamp - t) < 5000, `timestamp ${timestamp}`);

    await sleep(SLACK);
    assert.equal(recv.of(z.userId).length, 1, "one request");
    assert.equal(recv.of(y.userId).length, 0, "nothing for Y, connected");
  });
});

describe("a receiver down for long", () => {
  const WINDOW = 1000;
  const QUEUE_MAX = 5;
  const recv = new Receiver();
  let port;
  before(async () => {
    port = await freePort();
  });
  const box = serverPerSuite({ before, after, afterEach }, () =>
    startParley([
      "--notify-url",
      `http://127.0.0.1:${port}${HOOK_PATH}`,
      "--notify-secret",
      SECRET_N,
      "--notify-window-ms",
      String(WINDOW),
      "--notify-queue",
      String(QUEUE_MAX),
    ]),
  );
  after(() => recv.stop());

  test("the queue stays within --notify-queue, the oldest dropped and counted; the rest delivered once it is back", async () => {
    const { srv, clients } = box;
    const rooms = [newRoom("notify-down"), newRoom("notify-down")];
    const a = await clients.connect(newUser("ann"));
    for (const room of rooms) await a.join(room);
    // Six offline members of both rooms: 12 batches owed, for a queue of 5.
    const offline = [];
    for (let i = 0; i < 6; i++) {
      const c = await clients.connect(newUser(`off${i}`));
      for (const room of rooms) await c.join(room);
      offline.push(c);
    }
    for (const c of offline) clients.closeOne(c);
    for (const room of rooms) await heard(a, "userLeft", room, offline);

    for (const room of rooms) await a.send(room, `news in ${room}`);
    const owed = rooms.length * offline.length;
    const sent = (await broadcastIn(a, rooms[1], 1))[0];

    // Owed when the rooms' window closes (the service batches per room), all in one turn
    // of the loop: all but QUEUE_MAX are dropped.
    let m = await pollUntil(
      () => metrics(srv),
      (s) => metric(s, DROPPED) >= owed - QUEUE_MAX,
      { timeoutMs: 2 * WINDOW + SLACK, what: `${owed - QUEUE_MAX} batches dropped`, show: (s) => JSON.stringify([...s]) },
    );
    assert.equal(metric(m, DROPPED), owed - QUEUE_MAX, "the batches past the bound were dropped");
    assert.ok(metric(m, QUEUE) <= QUEUE_MAX, `queue ${metric(m, QUEUE)} within ${QUEUE_MAX}`);
    // Due, refused (nothing listens), waiting for their retry: still within the bound.
    const end = Date.now() + WINDOW + 400;
    while (Date.now() < end) {
      m = await metrics(srv);
      assert.ok(metric(m, QUEUE) <= QUEUE_MAX, `queue ${metric(m, QUEUE)} within ${QUEUE_MAX}`);
      await sleep(100);
    }
    assert.equal(metric(m, DROPPED), owed - QUEUE_MAX);
    assert.equal(metric(m, SENT), 0);

    await recv.start(port);
    await recv.until(() => recv.requests.length >= QUEUE_MAX, 2 * BACKOFF_MS * (1 + JITTER) + 2 * SLACK, `${QUEUE_MAX} batches once the receiver is back`);
    await sleep(SLACK);
    assert.equal(recv.requests.length, QUEUE_MAX, `only the batches kept: [${recv.summary()}]`);
    // The oldest were dropped: what is left is owed for the second room's message.
    const users = new Set();
    for (const r of recv.requests) {
      assertSigned(r);
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.messages, [sent]);
      assert.equal(r.body.roomId, rooms[1]);
      users.add(r.body.userId);
    }
    assert.equal(users.size, QUEUE_MAX, "one batch per user");
    for (const u of users) {
      assert.ok(
        offline.some((c) => c.userId === u),
        `${u} is one of the offline members`,
      );
    }
    m = await metrics(srv);
    assert.equal(metric(m, SENT), QUEUE_MAX);
    assert.equal(metric(m, QUEUE), 0);
    assert.equal(metric(m, DROPPED), owed - QUEUE_MAX);
  });
});
