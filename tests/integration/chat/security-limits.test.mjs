// Rate limits on every chat event and the room cap (security review, issue 11, defect 7).
//
// Every event a connection sends takes a token from its event bucket (--event-burst,
// --event-rate); without one it is answered {ok:false, error:"rate_limited"} and has no
// effect, so a typing flood cannot turn one connection into unbounded broadcasts. A socket
// is in at most --max-rooms-per-socket chat rooms (too_many_rooms above). A connection that
// keeps sending far over its limit (more than --flood-limit refused events within 10 s) is
// disconnected, with one log line. Normal use with the defaults meets none of this.
import { test, describe, before, beforeEach, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { newRoom, serverPerSuite, sleep, startParley, waitUntil, withTimeout } from "./util.mjs";

const LIMITED = { ok: false, error: "rate_limited" };

describe("event rate limit", () => {
  const BURST = 10;
  const RATE = 20;
  const box = serverPerSuite({ before, after, afterEach }, () =>
    startParley(["--store", "memory", "--event-burst", String(BURST), "--event-rate", String(RATE)]),
  );
  let clients;
  beforeEach(() => {
    clients = box.clients;
  });

  test("a typing flood is refused past the burst and its broadcasts stay bounded", async () => {
    const room = newRoom();
    const flooder = await clients.connect();
    const watcher = await clients.connect();
    await flooder.join(room);
    await watcher.join(room);
    await sleep((BURST * 1000) / RATE); // the flooder's bucket is full again
    const N = 200;
    const started = Date.now();
    const acks = await Promise.all(
      Array.from({ length: N }, (_, i) => flooder.ask("typing", { roomId: room, isTyping: i % 2 === 0 })),
    );
    const elapsedS = (Date.now() - started) / 1000;
    const ok = acks.filter((a) => a.ok === true).length;
    const limited = acks.filter((a) => a.ok === false).length;
    assert.ok(acks.every((a) => a.ok === true || (a.ok === false && a.error === "rate_limited")), JSON.stringify(acks.slice(0, 5)));
    const bound = BURST + Math.ceil(RATE * elapsedS) + 1;
    assert.ok(ok >= BURST && ok <= bound, `${ok} typing events taken (burst ${BURST}, bound ${bound}); ${limited} refused`);
    assert.equal(ok + limited, N);
    await watcher.flush();
    assert.equal(watcher.rec.count("userTyping"), ok, "one userTyping per accepted event, none for refused ones");
    assert.equal(flooder.s.connected, true, "a flood this size is refused, not disconnected");
  });

  test("every event takes a token: joinRoom, history, markRead, leaveRoom and unknown events too", async () => {
    const room = newRoom();
    const c = await clients.connect();
    await c.join(room);
    await sleep((BURST * 1000) / RATE);
    const events = [
      ["history", { roomId: room }],
      ["joinRoom", { roomId: room }],
      ["markRead", { roomId: room, messageIds: [] }],
      ["leaveRoom", { roomId: "never-joined" }],
    ];
    for (const [ev, payload] of events) {
      const acks = await Promise.all(Array.from({ length: BURST + 8 }, () => c.ask(ev, payload)));
      const taken = acks.filter((a) => a.ok === true).length;
      const refused = acks.filter((a) => a.ok === false);
      assert.ok(taken >= BURST && refused.length >= 3, `${ev}: ${taken} taken, ${refused.length} refused`);
      assert.ok(refused.every((a) => a.error === "rate_limited"), `${ev}: ${JSON.stringify(refused[0])}`);
      await sleep((BURST * 1000) / RATE);
    }
    // Unknown events are ignored, but they cost a token each.
    for (let i = 0; i < BURST + 5; i++) c.s.emit("no-such-event", i);
    assert.deepEqual(await c.ask("history", { roomId: room }), LIMITED, "the unknown events emptied the bucket");
  });

  test("the sendMessage limit still applies inside the event limit", async () => {
    const room = newRoom();
    const c = await clients.connect();
    await c.join(room);
    await sleep((BURST * 1000) / RATE);
    // The message bucket (default burst 5) is smaller than the event bucket (10).
    const acks = await Promise.all(Array.from({ length: 8 }, (_, i) => c.ask("sendMessage", { roomId: room, text: `m${i}` })));
    const ok = acks.filter((a) => a.ok).length;
    assert.ok(ok >= 5 && ok <= 6, `${ok} messages taken`);
    assert.ok(acks.filter((a) => !a.ok).every((a) => a.error === "rate_limited"));
  });
});

describe("room cap per socket", () => {
  const box = serverPerSuite({ before, after, afterEach }, () =>
    startParley(["--store", "memory", "--max-rooms-per-socket", "3"]),
  );
  let clients;
  beforeEach(() => {
    clients = box.clients;
  });

  test("joinRoom beyond --max-rooms-per-socket answers too_many_rooms; leaving makes room again", async () => {
    const c = await clients.connect();
    const rooms = [newRoom(), newRoom(), newRoom(), newRoom()];
    for (const r of rooms.slice(0, 3)) await c.join(r);
    assert.deepEqual(await c.ask("joinRoom", { roomId: rooms[3] }), { ok: false, error: "too_many_rooms" });
    assert.deepEqual(await c.ask("sendMessage", { roomId: rooms[3], text: "x" }), { ok: false, error: "not_in_room" });
    // Joining a room it is already in is not a new room.
    assert.equal((await c.ask("joinRoom", { roomId: rooms[0] })).ok, true);
    assert.deepEqual(await c.ask("leaveRoom", { roomId: rooms[1] }), { ok: true });
    await c.join(rooms[3]);
    await c.send(rooms[3], "in the fourth room, after leaving one");
    // Another connection of the same user has its own count.
    const c2 = await clients.connect(c.user);
    await c2.join(rooms[1]);
  });
});

describe("flooding connections are disconnected", () => {
  const box = serverPerSuite({ before, after, afterEach }, () =>
    startParley(["--store", "memory", "--event-burst", "5", "--event-rate", "1", "--flood-limit", "50"]),
  );
  let srv;
  let clients;
  beforeEach(() => {
    ({ srv, clients } = box);
  });

  test("a connection over --flood-limit refused events within 10 s is disconnected with a reason and one log line", async () => {
    const room = newRoom();
    const c = await clients.connect();
    const bystander = await clients.connect();
    await c.join(room);
    await bystander.join(room);
    const reason = withTimeout(new Promise((resolve) => c.s.once("disconnect", resolve)), 3000, "the flooder's disconnect");
    for (let i = 0; i < 500; i++) c.s.emit("typing", { roomId: room, isTyping: true });
    assert.equal(await reason, "io server disconnect");
    await waitUntil(() => /flood/i.test(srv.stderr()), { timeoutMs: 3000, what: "the log line" });
    const lines = srv.stderr().split("\n").filter((l) => /flood/i.test(l));
    assert.equal(lines.length, 1, `one log line: ${lines.join("\n")}`);
    // The server and the other connections are fine.
    assert.equal(bystander.s.connected, true);
    assert.equal((await bystander.ask("history", { roomId: room })).ok, true);
  });

  test("a connection that stays under the flood limit is not disconnected", async () => {
    const room = newRoom();
    const c = await clients.connect();
    await c.join(room);
    const acks = await Promise.all(Array.from({ length: 40 }, () => c.ask("typing", { roomId: room, isTyping: true })));
    assert.ok(acks.filter((a) => a.ok === false).length >= 30, "most refused");
    await sleep(1100);
    assert.equal(c.s.connected, true);
    assert.equal((await c.ask("typing", { roomId: room, isTyping: false })).ok, true);
  });
});

describe("normal use with the default limits", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--store", "memory"]));
  let clients;
  beforeEach(() => {
    clients = box.clients;
  });

  test("joining rooms, sending, typing, reading and paging history is never refused", async () => {
    const a = await clients.connect();
    const b = await clients.connect();
    const rooms = [newRoom(), newRoom(), newRoom()];
    for (const r of rooms) {
      await a.join(r);
      await b.join(r);
    }
    const ids = [];
    for (const r of rooms) {
      assert.deepEqual(await a.ask("typing", { roomId: r, isTyping: true }), { ok: true });
      ids.push((await a.send(r, `hello ${r}`)).id);
      assert.deepEqual(await a.ask("typing", { roomId: r, isTyping: false }), { ok: true });
      assert.deepEqual(await b.ask("markRead", { roomId: r, messageIds: [ids.at(-1)] }), { ok: true, lastReadSeq: 1 });
      assert.equal((await b.ask("history", { roomId: r, limit: 10 })).ok, true);
    }
    for (let i = 0; i < 20; i++) assert.deepEqual(await b.ask("typing", { roomId: rooms[0], isTyping: i % 2 === 0 }), { ok: true });
    assert.deepEqual(await a.ask("sendDirect", { toUserId: b.userId, text: "hi" }), { ok: true });
    await b.rec.waitCount("directMessage", 1);
  });
});
