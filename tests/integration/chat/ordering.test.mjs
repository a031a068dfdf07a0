// Ordering and presence under concurrency (docs/CHAT-API.md): every newMessage reaches every
// member in seq order without gaps while several senders send at once; each sender's
// messages keep its order; one user's two connections count as one member; joinRoom's
// messageHistory is the last 50 messages, oldest first; with connection state recovery a
// client that comes back gets what it missed (and with --no-recovery it starts afresh).
// Rate limits are raised here.
import { test, describe, before, beforeEach, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  MESSAGE_FIELDS,
  POLLING,
  WS,
  keysOf,
  newRoom,
  newUser,
  serverPerSuite,
  sleep,
  startParley,
  withTimeout,
} from "./util.mjs";

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const sorted = (a) => [...a].sort();

// Options for a websocket client that reconnects by itself (for connection state recovery).
const RECONNECTING = { ...WS.opts, reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 };

// Drops a websocket client's connection abruptly (TCP closed without a close frame) and
// resolves once the client noticed.
async function dropWebsocket(c) {
  const gone = new Promise((resolve) => c.s.once("disconnect", resolve));
  c.s.io.engine.transport.ws.terminate();
  return withTimeout(gone, 5000, "the client to notice the drop");
}

// Waits for the client's automatic reconnection.
function reconnected(c) {
  return withTimeout(new Promise((resolve) => c.s.once("connect", resolve)), 5000, "the reconnection");
}

describe("chat ordering", () => {
  const box = serverPerSuite({ before, after, afterEach }, () =>
    startParley(["--rate-burst", "1000", "--rate-per-sec", "1000"]),
  );
  let clients;
  beforeEach(() => {
    clients = box.clients;
  });

  test("3 senders x 300 messages, 4 receivers: all 900 in strictly increasing seq order, no gaps", async () => {
    const room = newRoom();
    const PER = 300;
    const receivers = [];
    for (const tr of [WS, POLLING, WS, POLLING]) {
      const c = await clients.connect(undefined, tr.opts);
      await c.join(room);
      receivers.push(c);
    }
    const senders = [];
    for (const tr of [WS, WS, POLLING]) {
      const c = await clients.connect(undefined, tr.opts);
      await c.join(room);
      senders.push(c);
    }

    // Everyone sends at once, each without waiting for its acks.
    const acks = await Promise.all(
      senders.map((c, k) =>
        Promise.all(range(0, PER - 1).map((i) => c.ask("sendMessage", { roomId: room, text: `s${k}:${i}` }, 30000))),
      ),
    );
    const byId = new Map();
    for (const [k, list] of acks.entries()) {
      for (const [i, ack] of list.entries()) {
        assert.equal(ack.ok, true, `sender ${k} message ${i}: ${JSON.stringify(ack)}`);
        byId.set(ack.id, { ...ack, text: `s${k}:${i}`, sender: k });
      }
      const seqs = list.map((x) => x.seq);
      for (let i = 1; i < seqs.length; i++) {
        assert.ok(seqs[i] > seqs[i - 1], `sender ${k}: message ${i} got seq ${seqs[i]} after ${seqs[i - 1]}`);
      }
    }
    const total = senders.length * PER;
    assert.equal(byId.size, total, "every message has its own id");
    assert.deepEqual(
      [...byId.values()].map((x) => x.seq).sort((x, y) => x - y),
      range(1, total),
      "acked seqs are 1..900",
    );

    for (const [j, c] of [...receivers, ...senders].entries()) {
      await c.rec.waitCount("newMessage", total, 30000);
      const got = c.rec.of("newMessage");
      assert.equal(got.length, total, `connection ${j}: exactly ${total} newMessage`);
      assert.deepEqual(
        got.map((m) => m.seq),
        range(1, total),
        `connection ${j}: seqs strictly increasing, no gaps`,
      );
      const next = [0, 0, 0];
      for (const m of got) {
        assert.deepEqual(keysOf(m), MESSAGE_FIELDS);
        const a = byId.get(m.id);
        assert.ok(a, `connection ${j}: unknown id ${m.id}`);
        assert.equal(m.seq, a.seq);
        assert.equal(m.text, a.text);
        assert.equal(m.timestamp, a.timestamp);
        assert.equal(m.roomId, room);
        assert.equal(m.userId, senders[a.sender].userId);
        assert.equal(m.text, `s${a.sender}:${next[a.sender]}`, `connection ${j}: sender ${a.sender}'s messages in send order`);
        next[a.sender]++;
      }
      assert.deepEqual(next, [PER, PER, PER]);
    }
  });

  test("two connections of one user: one member, userLeft after both leave, directMessage reaches both", async () => {
    const room = newRoom();
    const U = newUser("Twin");
    const o = await clients.connect();
    await o.join(room);
    const u1 = await clients.connect(U);
    const j1 = await u1.join(room);
    assert.deepEqual(sorted(j1.ack.members), sorted([o.userId, U.userId]));
    assert.deepEqual(await o.rec.next("userJoined"), { userId: U.userId, username: "Twin", roomId: room });
    const u2 = await clients.connect(U, POLLING.opts);
    const j2 = await u2.join(room);
    assert.deepEqual(sorted(j2.ack.members), sorted([o.userId, U.userId]), "one user, once");
    await o.flush();
    assert.equal(o.rec.count("userJoined"), 1, "the second connection is not announced");

    // A direct message reaches both connections.
    const x = await clients.connect();
    assert.deepEqual(await x.ask("sendDirect", { toUserId: U.userId, text: "to both" }), { ok: true });
    for (const u of [u1, u2]) {
      const m = await u.rec.next("directMessage");
      assert.equal(m.text, "to both");
      assert.equal(m.from, x.userId);
      assert.equal(m.to, U.userId);
    }

    // Both get room messages.
    await o.send(room, "hi twins");
    for (const u of [u1, u2]) assert.equal((await u.rec.next("newMessage")).text, "hi twins");

    // The first connection goes away: U is still present.
    clients.closeOne(u1);
    await sleep(300);
    await o.flush();
    assert.equal(o.rec.count("userLeft"), 0, "U still has a connection in the room");
    const again = await o.ask("joinRoom", { roomId: room });
    assert.deepEqual(sorted(again.members), sorted([o.userId, U.userId]));

    // The second one leaves: now U has left.
    assert.deepEqual(await u2.ask("leaveRoom", { roomId: room }), { ok: true });
    assert.deepEqual(await o.rec.next("userLeft"), { userId: U.userId, username: "Twin", roomId: room });
    await o.flush();
    assert.equal(o.rec.count("userLeft"), 1);
    const after = await o.ask("joinRoom", { roomId: room });
    assert.deepEqual(after.members, [o.userId]);
  });

  test("a room with 60 messages joined later gets the last 50 (seq 11..60) in order", async () => {
    const room = newRoom();
    const s = await clients.connect(newUser("Historian"));
    await s.join(room);
    const acks = await Promise.all(range(1, 60).map((i) => s.ask("sendMessage", { roomId: room, text: `message ${i}` })));
    for (const a of acks) assert.equal(a.ok, true, JSON.stringify(a));
    assert.deepEqual(
      acks.map((a) => a.seq),
      range(1, 60),
    );
    const late = await clients.connect(undefined, POLLING.opts);
    const { history } = await late.join(room);
    assert.equal(history.length, 50);
    assert.deepEqual(
      history.map((m) => m.seq),
      range(11, 60),
    );
    assert.deepEqual(
      history,
      acks.slice(10).map((a, i) => ({
        id: a.id,
        seq: a.seq,
        roomId: room,
        userId: s.userId,
        username: "Historian",
        text: `message ${i + 11}`,
        timestamp: a.timestamp,
      })),
    );
    const ws = await clients.connect();
    assert.deepEqual((await ws.join(room)).history, history);
  });

  // With workers the client may come back to another worker: that one borrows the session.
  test("connection state recovery: a client back within 2 minutes gets the newMessages it missed, in order", async () => {
    const room = newRoom();
    const s = await clients.connect();
    await s.join(room);
    const r = await clients.connect(newUser("Roamer"), RECONNECTING);
    await r.join(room);
    await s.send(room, "m1");
    assert.equal((await r.rec.next("newMessage")).text, "m1");

    const back = reconnected(r);
    await dropWebsocket(r);
    for (const t of ["m2", "m3", "m4", "m5", "m6"]) await s.send(room, t);
    await back;
    assert.equal(r.s.recovered, true, "socket.recovered");
    await r.rec.waitCount("newMessage", 6);
    // Still in the room without joining again.
    await s.send(room, "m7");
    await r.rec.waitCount("newMessage", 7);
    await r.flush();
    assert.deepEqual(
      r.rec.of("newMessage").map((m) => [m.seq, m.text]),
      range(1, 7).map((i) => [i, `m${i}`]),
      "every message once, in seq order",
    );
    const mine = await r.send(room, "I am back");
    assert.equal(mine.seq, 8);
    assert.equal(r.rec.count("messageHistory"), 1, "no new joinRoom happened");
  });
});

describe("chat without connection state recovery", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--no-recovery", "--store", "memory"]));
  let clients;
  beforeEach(() => {
    clients = box.clients;
  });

  test("--no-recovery: a reconnecting client is a new session, out of its rooms", async () => {
    const room = newRoom();
    const s = await clients.connect();
    await s.join(room);
    const r = await clients.connect(undefined, RECONNECTING);
    await r.join(room);
    const back = reconnected(r);
    await dropWebsocket(r);
    await s.send(room, "missed");
    await back;
    assert.notEqual(r.s.recovered, true, "not recovered");
    await s.send(room, "after");
    await r.flush();
    assert.equal(r.rec.count("newMessage"), 0, "no longer in the room");
    assert.deepEqual(await r.ask("sendMessage", { roomId: room, text: "x" }), { ok: false, error: "not_in_room" });
  });
});
