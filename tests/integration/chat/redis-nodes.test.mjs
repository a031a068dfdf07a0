// Two parley nodes with --store redis on one real redis-server (chat/store_redis.c,
// docs/CLUSTER.md): one seq order per room whatever node each sender is on, every
// client of either node gets every message once and in order, history and `after` are
// the same on both, receipts are checked against the shared ids, and an ack never comes
// for a message that is not in Redis (Redis stopped: sends fail, nothing is acked; with
// appendfsync always, every acked message survives Redis killed with SIGKILL).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { createClient } from "redis";

import { startRedis } from "../lib/redis.mjs";
import { SseStream } from "./sse.mjs";
import { processExit } from "../lib/server.mjs";
import { Clients, fullHistory, newRoom, newUser, request, startParley, waitUntil } from "./util.mjs";

describe("two nodes, one Redis store", () => {
  let redis, a, b, ca, cb;

  before(async () => {
    redis = await startRedis();
    const args = ["--store", "redis", "--redis-url", redis.url, "--rate-burst", "1000", "--rate-per-sec", "1000"];
    [a, b] = await Promise.all([startParley(args), startParley(args)]);
    ca = new Clients(a);
    cb = new Clients(b);
  });

  after(async () => {
    ca?.closeAll();
    cb?.closeAll();
    await a?.stop();
    await b?.stop();
    await redis?.stop();
  });

  test("concurrent senders on both nodes: one gap-free seq order, seen the same everywhere", async () => {
    const room = newRoom();
    const readers = [await ca.connect(), await cb.connect(), await ca.connect(), await cb.connect()];
    for (const r of readers) await r.join(room);
    const senders = [readers[0], readers[1], readers[2], readers[3]];
    const N = 40;
    const acks = await Promise.all(senders.map((s, i) => Promise.all(Array.from({ length: N }, (_, k) => s.send(room, `s${i}-${k}`)))));
    const seqs = acks.flat().map((x) => x.seq).sort((x, y) => x - y);
    assert.deepEqual(seqs, Array.from({ length: 4 * N }, (_, i) => i + 1), "every seq once, no gap");
    // Every reader, on either node, got every message once, in seq order.
    for (const r of readers) {
      await r.rec.waitCount("newMessage", 4 * N, 10000);
      const got = r.rec.of("newMessage").filter((m) => m.roomId === room);
      assert.deepEqual(got.map((m) => m.seq), seqs, `reader ${r.userId}`);
    }
    // The same text at the same seq everywhere, and in history from both nodes.
    const order = readers[0].rec.of("newMessage").map((m) => `${m.seq}:${m.text}`);
    for (const r of readers) assert.deepEqual(r.rec.of("newMessage").map((m) => `${m.seq}:${m.text}`), order);
    const ha = await fullHistory(readers[0], room);
    const hb = await fullHistory(readers[1], room);
    assert.deepEqual(ha.map((m) => `${m.seq}:${m.text}`), order);
    assert.deepEqual(hb, ha);
  });

  test("SSE and long-poll readers on either node get every message, and resume on the other", async () => {
    const room = newRoom();
    const reader = newUser("Reader");
    const auth = { authorization: `Bearer ${reader.token}` };
    const url = (srv, rest) => `${srv.url}/api/rooms/${encodeURIComponent(room)}${rest}`;
    const sender = await ca.connect();
    await sender.join(room);
    // A stream on node b and a held long-poll on node b, for messages sent on node a.
    const stream = await SseStream.open(url(b, "/events"), auth);
    assert.equal(stream.status, 200, stream.body);
    const held = request(url(b, "/messages?after=0&wait=10"), { headers: auth, timeoutMs: 15000 });
    const first = await sender.send(room, "one");
    const polled = await held;
    assert.equal(polled.status, 200, polled.text);
    assert.deepEqual(JSON.parse(polled.text).map((m) => m.seq), [first.seq]);
    await stream.waitMessages(1);
    stream.close();
    // Sent while the stream is away; it resumes on node a with its Last-Event-ID.
    const missed = [await sender.send(room, "two"), await sender.send(room, "three")];
    const resumed = await SseStream.open(url(a, "/events"), { ...auth, "last-event-id": String(first.seq) });
    await resumed.waitMessages(2);
    const after = await sender.send(room, "four");
    await resumed.waitMessages(3);
    assert.deepEqual(resumed.messages().map((m) => m.seq), [...missed, after].map((m) => m.seq), "no gap, no duplicate");
    resumed.close();
    // A long-poll on node a from the last seq it saw gets exactly what came after.
    const rest = await request(url(a, `/messages?after=${missed[0].seq}&wait=1`), { headers: auth });
    assert.deepEqual(JSON.parse(rest.text).map((m) => m.text), ["three", "four"]);
  });

  test("a sender gets its own message before its ack, on either node", async () => {
    const room = newRoom();
    const s = await cb.connect();
    await s.join(room);
    const ack = await s.send(room, "mine");
    const got = s.rec.of("newMessage").filter((m) => m.roomId === room);
    assert.deepEqual(got.map((m) => m.seq), [ack.seq], "announced before the ack came back");
  });

  test("receipts name messages stored by the other node", async () => {
    const room = newRoom();
    const [x, y] = [await ca.connect(), await cb.connect()];
    await x.join(room);
    await y.join(room);
    const ack = await x.send(room, "read me");
    await waitUntil(() => y.rec.of("newMessage").some((m) => m.id === ack.id), { what: "y got it" });
    const r = await y.ask("markRead", { roomId: room, messageIds: [ack.id] });
    assert.equal(r.ok, true, JSON.stringify(r));
    const bad = await y.ask("markRead", { roomId: room, messageIds: ["00000000000000ff-1"] });
    assert.equal(bad.ok, false, JSON.stringify(bad));
  });

  test("subscribers cut while the other node sends: what they missed is read back, in order", async () => {
    const room = newRoom();
    const [x, y] = [await ca.connect(), await cb.connect()];
    await x.join(room);
    await y.join(room);
    await x.send(room, "first");
    await y.rec.waitCount("newMessage", 1);
    const admin = createClient({ url: redis.url });
    await admin.connect();
    try {
      // Both nodes' subscribed connections drop; the sends go on from one node while they
      // reconnect (after 100 ms), and nothing else is sent after them.
      await admin.sendCommand(["CLIENT", "KILL", "TYPE", "pubsub"]);
      for (let i = 0; i < 5; i++) await x.send(room, `during ${i}`);
    } finally {
      await admin.quit();
    }
    for (const c of [x, y]) {
      await c.rec.waitCount("newMessage", 6, 10000);
      assert.deepEqual(c.rec.of("newMessage").map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
    }
  });

  test("recovery on the other node: another user's token is refused there, the victim recovers there", async () => {
    const room = newRoom();
    const victimUser = newUser("Victim");
    const victim = await ca.connect(victimUser);
    await victim.join(room);
    const other = await cb.connect();
    await other.join(room);
    await other.send(room, "before");
    await victim.rec.waitCount("newMessage", 1);
    const session = { pid: victim.s._pid, offset: victim.s._lastOffset, sid: victim.s.id };
    assert.ok(session.pid && session.offset);
    victim.s.io.engine.transport.ws.terminate();
    // Its node let go of it (and kept its session, in the same step) once the others hear
    // that it left.
    await waitUntil(() => other.rec.of("userLeft").some((e) => e.userId === victimUser.userId), { what: "node A let go of it" });
    // Mallory offers the victim's session to node B: refused there, given back to A.
    const mallory = newUser("Mallory");
    const m = await cb.connect(mallory, { auth: { token: mallory.token, pid: session.pid, offset: session.offset } });
    assert.notEqual(m.s.id, session.sid, "not the victim's socket");
    await other.send(room, "while away");
    await m.flush();
    assert.equal(m.rec.count("newMessage"), 0, "none of the victim's room messages");
    // The victim comes back to node B with its session: restored there, with what it missed.
    const back = await cb.connect(victimUser, { auth: { token: victimUser.token, pid: session.pid, offset: session.offset } });
    assert.equal(back.s.id, session.sid, "the same socket, restored on the other node");
    await back.rec.waitCount("newMessage", 1);
    assert.equal(back.rec.of("newMessage")[0].text, "while away");
    await back.send(room, "back, on node B");
  });

  test("typing and direct messages cross nodes: every connection of the recipient, once", async () => {
    const room = newRoom();
    const sender = await ca.connect(newUser("Sender"));
    const to = newUser("Recipient");
    const [r1, r2] = [await ca.connect(to), await cb.connect(to)];
    await sender.join(room);
    await r2.join(room);
    assert.deepEqual(await sender.ask("typing", { roomId: room, isTyping: true }), { ok: true });
    await waitUntil(() => r2.rec.count("userTyping") === 1, { what: "typing on node B" });
    assert.equal(r2.rec.of("userTyping")[0].userId, sender.userId);
    assert.deepEqual(await sender.ask("sendDirect", { toUserId: to.userId, text: "psst" }), { ok: true });
    for (const r of [r1, r2]) {
      await waitUntil(() => r.rec.count("directMessage") === 1, { what: "the direct message" });
      assert.equal(r.rec.of("directMessage")[0].text, "psst");
    }
    await r1.flush();
    await r2.flush();
    assert.equal(r1.rec.count("directMessage") + r2.rec.count("directMessage"), 2, "once on each connection");
  });

  test("presence across nodes: userJoined and userLeft once per user, member lists of both nodes", async () => {
    const room = newRoom();
    const watcher = await cb.connect(newUser("Watcher"));
    await watcher.join(room);
    const u = newUser("Roamer");
    const onA = await ca.connect(u);
    const onB = await cb.connect(u);
    const joinA = await onA.join(room);
    await onB.join(room);
    await waitUntil(() => watcher.rec.count("userJoined") >= 1, { what: "userJoined" });
    // A's member list has B's watcher: it was loaded from Redis when A's first member came.
    const members = (await (await ca.connect()).join(room)).ack.members;
    assert.ok(members.includes(watcher.userId) && members.includes(u.userId), JSON.stringify(members));
    assert.ok(joinA.ack.members.includes(u.userId));
    // One of the user's two connections leaves: still present. The other: gone, once.
    ca.closeOne(onA);
    await watcher.flush();
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(watcher.rec.of("userLeft").filter((e) => e.userId === u.userId).length, 0, "still on node B");
    cb.closeOne(onB);
    await waitUntil(() => watcher.rec.of("userLeft").some((e) => e.userId === u.userId), { what: "userLeft" });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(watcher.rec.of("userJoined").filter((e) => e.userId === u.userId).length, 1, "joined once");
    assert.equal(watcher.rec.of("userLeft").filter((e) => e.userId === u.userId).length, 1, "left once");
  });

  test("a node killed with SIGKILL leaves no ghosts: its users leave within the heartbeat's expiry", { timeout: 40000 }, async () => {
    const room = newRoom();
    const watcher = await ca.connect(newUser("Watcher"));
    await watcher.join(room);
    const c = await startParley(["--store", "redis", "--redis-url", redis.url]);
    try {
      const cc = new Clients(c);
      const ghost = await cc.connect(newUser("Ghost"));
      await ghost.join(room);
      await waitUntil(() => watcher.rec.of("userJoined").some((e) => e.userId === ghost.userId), { what: "joined" });
      c.process.kill("SIGKILL");
      const t0 = Date.now();
      await waitUntil(() => watcher.rec.of("userLeft").some((e) => e.userId === ghost.userId), { what: "the ghost left", timeoutMs: 30000, intervalMs: 200 });
      assert.ok(Date.now() - t0 < 20000, `${Date.now() - t0} ms`);
      cc.closeAll();
    } finally {
      if (c.process.exitCode === null && c.process.signalCode === null) await c.stop();
      c.cleanup?.();
    }
  });

  test("Redis stopped: sends are refused, never acked; back, they work again", async () => {
    const room = newRoom();
    const s = await ca.connect(newUser("Patient"));
    await s.join(room);
    await s.send(room, "before");
    await redis.stop();
    const refused = await s.ask("sendMessage", { roomId: room, text: "lost?" });
    assert.notEqual(refused?.ok, true, JSON.stringify(refused));
    // Alive, not ready.
    const live = await request(`${a.url}/healthz`);
    assert.equal(live.status, 200, live.text);
    await waitUntil(async () => (await request(`${a.url}/readyz`)).status === 503, { what: "not ready" });
    const ready = JSON.parse((await request(`${a.url}/readyz`)).text);
    assert.ok(ready.reasons.includes("redis: unreachable"), JSON.stringify(ready));
    const port = redis.port;
    redis = await startRedis([], { port });
    await waitUntil(async () => (await s.ask("sendMessage", { roomId: room, text: "after" }))?.ok === true, {
      what: "sends accepted again",
      timeoutMs: 15000,
      intervalMs: 200,
    });
    await waitUntil(async () => (await request(`${a.url}/readyz`)).status === 200, { what: "ready again" });
  });
});

describe("two nodes, one Redis: a user's HTTP posts share one bucket", () => {
  let redis, a, b;

  before(async () => {
    redis = await startRedis();
    const args = ["--store", "redis", "--redis-url", redis.url, "--rate-burst", "3", "--rate-per-sec", "1"];
    [a, b] = await Promise.all([startParley(args), startParley(args)]);
    // A node answers 503 until its Redis connections are up, as /readyz says (a balancer
    // would not send it traffic before): the bucket is what this test is about.
    for (const srv of [a, b]) await waitUntil(async () => (await request(`${srv.url}/readyz`)).status === 200, { what: "ready" });
  });

  after(async () => {
    await a?.stop();
    await b?.stop();
    await redis?.stop();
  });

  test("posts alternating between the nodes are counted together: the burst, then 429", async () => {
    const room = newRoom();
    const u = newUser("Poster");
    const post = (srv, text) =>
      request(`${srv.url}/api/rooms/${encodeURIComponent(room)}/messages`, {
        method: "POST",
        body: JSON.stringify({ text }),
        headers: { "content-type": "application/json", authorization: `Bearer ${u.token}` },
      });
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await post(i % 2 ? b : a, `p${i}`)).status);
    assert.deepEqual(codes.slice(0, 3).every((c) => c === 200 || c === 201), true, JSON.stringify(codes));
    assert.equal(codes[3], 429, `the fourth post, across both nodes: ${JSON.stringify(codes)}`);
  });
});

describe("Redis with appendfsync always: what was acked survives Redis killed with SIGKILL", () => {
  let redis, node, dir;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-aof-"));
    redis = await startRedis(["--dir", dir, "--appendonly", "yes", "--appendfsync", "always"]);
    node = await startParley(["--store", "redis", "--redis-url", redis.url, "--rate-burst", "100"]);
  });

  after(async () => {
    await node?.stop();
    await redis?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("acked messages are in the history after Redis comes back from a kill", async () => {
    const clients = new Clients(node);
    const room = newRoom();
    const c = await clients.connect();
    // With workers, the one serving c may still be connecting to Redis.
    await waitUntil(() => c.join(room).then(() => true, () => false), { what: "joined", timeoutMs: 10000 });
    const acked = [];
    for (let i = 0; i < 20; i++) acked.push(await c.send(room, `durable ${i}`));
    redis.process.kill("SIGKILL");
    await processExit(redis.process);
    redis = await startRedis(["--dir", dir, "--appendonly", "yes", "--appendfsync", "always"], { port: redis.port });
    await waitUntil(async () => (await request(`${node.url}/readyz`)).status === 200, { what: "ready again", timeoutMs: 15000 });
    // With workers, /readyz is the answering worker's: the one serving c may reconnect
    // to Redis a moment later.
    let history;
    await waitUntil(async () => (history = await fullHistory(c, room).catch(() => undefined)) !== undefined, {
      what: "the history readable again",
      timeoutMs: 15000,
    });
    assert.deepEqual(history.map((m) => m.seq), acked.map((a) => a.seq));
    assert.deepEqual(history.map((m) => m.text), acked.map((_, i) => `durable ${i}`));
    clients.closeAll();
  });
});
