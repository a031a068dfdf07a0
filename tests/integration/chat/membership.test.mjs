// Persistent membership (issue 16, docs/MEMBERSHIP.md) against a real parley, with the
// official socket.io-client: `myRooms` on connect ([{roomId, lastSeq, lastReadSeq, unread}],
// sorted by room id), `joinRooms {roomIds?}`, `markRead {seq}` and the `roomRead` news to
// every connection of the user, `leaveRoom {forget: true}` (the read mark is kept), and the
// HTTP reads GET /api/users/me/rooms and GET /api/rooms/{id}/members (memberships).
//
// The shared tests run once per store: SQLite (its own temporary directory), memory and
// Redis (a real redis-server). Then: memberships survive a restart of the SQLite store on
// the same data directory; a --room-claim narrows what is listed and joined; two nodes on
// one Redis store see each other's memberships.
//
// With PARLEY_TEST_WORKERS=N (util.mjs) every server runs N worker processes, so the
// connections of one user may sit on different workers: news that crosses processes (a
// myRooms or roomRead sent to the user's other connections, messagesRead to the room,
// presence as the members endpoint shows it) is awaited with a bound (NEWS_MS), never
// assumed to be there at once. Waits on "the latest myRooms" ask for the exact list, so a
// wrong one fails at the bound with the list that was received.
import { test, describe, before, beforeEach, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { startRedis } from "../lib/redis.mjs";
import { pollUntil } from "../lib/wait.mjs";
import { Clients, newRoom, newUser, request, rmTemp, serverPerSuite, signToken, nowS, startParley, tempDir } from "./util.mjs";

const KEY = "membership-api-key-0123456789";
// Rates high enough that no test meets a limit (each test sends a few dozen events).
const BASE = ["--api-key", KEY, "--rate-burst", "1000", "--rate-per-sec", "1000"];
const NEWS_MS = 10000;

const err = (error) => ({ ok: false, error });
const entry = (roomId, lastSeq = 0, lastReadSeq = 0) => ({ roomId, lastSeq, lastReadSeq, unread: lastSeq - lastReadSeq });
const byId = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// ---- helpers ----

// Connects user (a new one when omitted) and waits for the myRooms every connection gets.
async function connectMy(clients, user) {
  const c = await clients.connect(user);
  const rooms = await c.rec.next("myRooms", NEWS_MS);
  return { c, rooms };
}

// Waits until c has received `ev` more than `after` times and the latest one equals
// expected; a bounded wait (ms) whose failure shows what came last.
async function latest(c, ev, expected, what, after = 0, ms = NEWS_MS) {
  try {
    await c.rec.until(() => c.rec.count(ev) > after && isDeepStrictEqual(c.rec.of(ev).at(-1), expected), ms, what);
  } catch (e) {
    assert.deepEqual(c.rec.of(ev).at(-1), expected, `${what} (${e.message})`);
    throw e;
  }
}

// GET /api/users/me/rooms with a user's token → {status, body}.
async function myRoomsHttp(srv, token) {
  const r = await request(`${srv.url}/api/users/me/rooms`, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, body: JSON.parse(r.text) };
}

// GET /api/rooms/{id}/members with the API key → the body (asserting 200).
async function membersHttp(srv, roomId) {
  const r = await request(`${srv.url}/api/rooms/${encodeURIComponent(roomId)}/members`, { headers: { "x-api-key": KEY } });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

// The membership of userId in the body of membersHttp (undefined when not a member).
const membershipOf = (body, userId) => body.memberships.find((m) => m.userId === userId);

// Polls the members endpoint until pred(body) holds (presence may cross workers).
function membersUntil(srv, roomId, pred, what) {
  return pollUntil(() => membersHttp(srv, roomId), pred, { timeoutMs: NEWS_MS, what, label: "last members" });
}

// A poster: a new user in every room of `rooms`, sending n[i] messages to rooms[i].
// Returns the acks per room.
async function post(clients, rooms, counts) {
  const v = await clients.connect(newUser("Poster"));
  const acks = [];
  for (let i = 0; i < rooms.length; i++) {
    await v.join(rooms[i]);
    const list = [];
    for (let k = 0; k < counts[i]; k++) list.push(await v.send(rooms[i], `${rooms[i]} #${k + 1}`));
    acks.push(list);
  }
  return { v, acks };
}

// ---- the shared tests, once per store ----

// setup: optional {before, after}, run before the server starts and after it stopped.
function sharedTests(storeName, start, setup = {}) {
  describe(`membership (${storeName} store)`, () => {
    if (setup.before) before(setup.before);
    const box = serverPerSuite({ before, after, afterEach }, start);
    let srv;
    let clients;
    if (setup.after) after(setup.after);
    beforeEach(() => {
      ({ srv, clients } = box);
    });

    test("myRooms: [] for a new user; a new connection lists every room joined, sorted, with lastSeq, lastReadSeq and unread", async () => {
      const U = newUser("Una");
      const { c: c1, rooms: first } = await connectMy(clients, U);
      assert.deepEqual(first, [], "a new user is a member of nothing");
      // Joined in the reverse of their sorted order: the list is sorted by room id.
      const z = newRoom("zz");
      const a = newRoom("aa");
      await c1.join(z);
      await latest(c1, "myRooms", [entry(z)], "myRooms after joining z");
      await c1.join(a);
      await latest(c1, "myRooms", [entry(a), entry(z)], "myRooms after joining a and z");
      // Another user posts 3 messages to z and 2 to a; U has read z up to seq 1.
      await post(clients, [z, a], [3, 2]);
      assert.deepEqual(await c1.ask("markRead", { roomId: z, seq: 1 }), { ok: true, lastReadSeq: 1 });
      clients.closeOne(c1);
      // A new connection (not a recovered session): the rooms come back as memberships.
      const { c: c2, rooms } = await connectMy(clients, U);
      assert.deepEqual(rooms, [entry(a, 2, 0), entry(z, 3, 1)]);
      // Listed, not joined: the new connection is in no room until it asks.
      assert.deepEqual(await c2.ask("history", { roomId: a }), err("not_in_room"));
    });

    test("joinRooms without roomIds joins every membership: one messageHistory per room, one ack entry per room in order", async () => {
      const U = newUser("Jo");
      const [r1, r2] = [newRoom("jr"), newRoom("jr")].sort(byId);
      const { c: c1 } = await connectMy(clients, U);
      await c1.join(r2);
      await c1.join(r1);
      const { v } = await post(clients, [r1, r2], [2, 1]);
      clients.closeOne(c1);
      const { c: c2, rooms } = await connectMy(clients, U);
      assert.deepEqual(rooms, [entry(r1, 2), entry(r2, 1)]);
      const ack = await c2.ask("joinRooms", {});
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.deepEqual(
        ack.rooms.map((r) => [r.ok, r.roomId]),
        [
          [true, r1],
          [true, r2],
        ],
        JSON.stringify(ack),
      );
      for (const r of ack.rooms) assert.ok(r.members.includes(U.userId), `members of ${r.roomId}: ${JSON.stringify(r.members)}`);
      await c2.rec.waitCount("messageHistory", 2);
      const histories = c2.rec.of("messageHistory").map((h) => h.map((m) => `${m.roomId}:${m.seq}:${m.text}`));
      assert.deepEqual(
        histories.sort((x, y) => byId(x[0], y[0])),
        [
          [`${r1}:1:${r1} #1`, `${r1}:2:${r1} #2`],
          [`${r2}:1:${r2} #1`],
        ],
      );
      // In both rooms, live: a new message of r2 reaches it, history of r1 answers.
      const m = await v.send(r2, "after joinRooms");
      const got = await c2.rec.until(() => c2.rec.of("newMessage").find((x) => x.id === m.id), NEWS_MS, "the new message of r2");
      assert.equal(got.roomId, r2);
      assert.equal((await c2.ask("history", { roomId: r1 })).ok, true);
      // No payload and roomIds: null mean the same (already in the rooms: ok again).
      const again = await c2.s.timeout(5000).emitWithAck("joinRooms");
      assert.deepEqual(
        again.rooms.map((r) => [r.ok, r.roomId]),
        [
          [true, r1],
          [true, r2],
        ],
      );
      const nulled = await c2.ask("joinRooms", { roomIds: null });
      assert.deepEqual(nulled.rooms.map((r) => r.roomId), [r1, r2]);
      // No membership: nothing to join.
      const { c: nobody } = await connectMy(clients);
      assert.deepEqual(await nobody.ask("joinRooms", {}), { ok: true, rooms: [] });
    });

    test("joinRooms with roomIds joins those, in the order given (a new room becomes a membership)", async () => {
      const U = newUser("Ids");
      const [r1, r2, r3] = [newRoom("ids"), newRoom("ids"), newRoom("ids")].sort(byId);
      const { c: c1 } = await connectMy(clients, U);
      for (const r of [r1, r2, r3]) await c1.join(r);
      clients.closeOne(c1);
      const { c: c2 } = await connectMy(clients, U);
      const ack = await c2.ask("joinRooms", { roomIds: [r3, r1] });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.deepEqual(ack.rooms.map((r) => [r.ok, r.roomId]), [
        [true, r3],
        [true, r1],
      ]);
      await c2.rec.waitCount("messageHistory", 2);
      assert.equal((await c2.ask("history", { roomId: r3 })).ok, true);
      assert.equal((await c2.ask("history", { roomId: r1 })).ok, true);
      assert.deepEqual(await c2.ask("history", { roomId: r2 }), err("not_in_room"), "r2 was not asked for");
      assert.deepEqual(await c2.ask("joinRooms", { roomIds: [] }), { ok: true, rooms: [] });
      // A room the user was never in: joined like joinRoom, so a member from now on.
      const fresh = newRoom("ids-new");
      const more = await c2.ask("joinRooms", { roomIds: [fresh] });
      assert.deepEqual(more.rooms.map((r) => [r.ok, r.roomId]), [[true, fresh]]);
      const listed = await myRoomsHttp(srv, U.token);
      assert.deepEqual(listed.body.rooms.map((r) => r.roomId), [r1, r2, r3, fresh].sort(byId));
    });

    test("joinRooms refuses malformed payloads with invalid_payload and joins nothing", async () => {
      const U = newUser("Bad");
      const room = newRoom("bad");
      const { c: c1 } = await connectMy(clients, U);
      await c1.join(room);
      clients.closeOne(c1);
      const { c } = await connectMy(clients, U);
      const tooMany = Array.from({ length: 1001 }, (_, i) => `many-${i}`);
      const payloads = [
        "just a string",
        5,
        [room],
        { roomIds: room },
        { roomIds: 5 },
        { roomIds: {} },
        { roomIds: true },
        { roomIds: [""] },
        { roomIds: [42] },
        { roomIds: [null] },
        { roomIds: [[room]] },
        { roomIds: ["x".repeat(129)] },
        { roomIds: ["a\u0000b"] },
        { roomIds: ["\u200b"] },
        { roomIds: [room, ""] }, // one bad id spoils the lot
        { roomIds: tooMany },
      ];
      for (const p of payloads) {
        assert.deepEqual(await c.ask("joinRooms", p), err("invalid_payload"), JSON.stringify(p).slice(0, 80));
      }
      await c.flush();
      assert.equal(c.rec.count("messageHistory"), 0, "no room was joined");
      assert.deepEqual(await c.ask("history", { roomId: room }), err("not_in_room"));
      // 1000 ids is the most: accepted as a payload, each entry answered on its own, in
      // order: the first 128 (--max-rooms-per-socket's default) joined, the rest refused.
      const ack = await c.ask("joinRooms", { roomIds: [room, ...tooMany.slice(0, 999)] }, 20000);
      assert.equal(ack.ok, true);
      assert.equal(ack.rooms.length, 1000);
      assert.deepEqual(ack.rooms[0], { ok: true, roomId: room, members: [U.userId] });
      assert.deepEqual(
        ack.rooms.map((r) => r.ok),
        Array.from({ length: 1000 }, (_, i) => i < 128),
      );
      assert.deepEqual(ack.rooms[128], { ok: false, roomId: tooMany[127], error: "too_many_rooms" });
    });

    test("unread across two connections of one user: markRead {seq} → roomRead on both, never backwards, capped at the last seq; messagesRead to the others", async () => {
      const U = newUser("Two Tabs");
      const room = newRoom("unread");
      const { c: c1 } = await connectMy(clients, U);
      await c1.join(room);
      // The second connection has not joined the room: roomRead goes to the user.
      const { c: c2 } = await connectMy(clients, U);
      const { v, acks } = await post(clients, [room], [5]);
      const ids = acks[0].map((x) => x.id);
      assert.deepEqual(
        acks[0].map((x) => x.seq),
        [1, 2, 3, 4, 5],
      );
      const read = (lastReadSeq) => ({ roomId: room, lastReadSeq, lastSeq: 5, unread: 5 - lastReadSeq });
      const receipt = (lastReadSeq, messageIds = []) => ({ userId: U.userId, messageIds, roomId: room, lastReadSeq });

      assert.deepEqual(await c1.ask("markRead", { roomId: room, seq: 3 }), { ok: true, lastReadSeq: 3 });
      await latest(c1, "roomRead", read(3), "roomRead on the reading connection");
      await latest(c2, "roomRead", read(3), "roomRead on the other connection");
      assert.deepEqual(await v.rec.next("messagesRead", NEWS_MS), receipt(3));

      // An older seq: acknowledged with the higher mark, which stays.
      assert.deepEqual(await c1.ask("markRead", { roomId: room, seq: 2 }), { ok: true, lastReadSeq: 3 });
      assert.deepEqual(await v.rec.next("messagesRead", NEWS_MS), receipt(3));
      await c1.flush();
      assert.deepEqual(c1.rec.of("roomRead").at(-1), read(3), "the mark did not move back");

      // By message id: the mark is the highest of the ids' seqs and seq.
      assert.deepEqual(await c1.ask("markRead", { roomId: room, messageIds: [ids[3]], seq: 1 }), { ok: true, lastReadSeq: 4 });
      await latest(c2, "roomRead", read(4), "roomRead after a read by id");
      assert.deepEqual(await v.rec.next("messagesRead", NEWS_MS), receipt(4, [ids[3]]));

      // Beyond the last message: everything is read, and the mark is the last seq.
      assert.deepEqual(await c1.ask("markRead", { roomId: room, seq: 1000 }), { ok: true, lastReadSeq: 5 });
      await latest(c1, "roomRead", read(5), "roomRead after reading everything");
      await latest(c2, "roomRead", read(5), "roomRead after reading everything (other connection)");
      assert.deepEqual(await v.rec.next("messagesRead", NEWS_MS), receipt(5));

      // The reader itself hears no messagesRead of its own receipts; the poster none of its own.
      await c1.flush();
      assert.equal(c1.rec.count("messagesRead"), 0);
      assert.equal(v.rec.count("roomRead"), 0, "roomRead is the reader's news only");

      // Malformed seqs, and a room not joined by this connection.
      for (const seq of [0, -1, "3", 1.5, true, {}]) {
        assert.deepEqual(await c1.ask("markRead", { roomId: room, seq }), err("invalid_payload"), `seq ${JSON.stringify(seq)}`);
      }
      assert.deepEqual(await c2.ask("markRead", { roomId: room, seq: 5 }), err("not_in_room"));

      // What a new connection and the HTTP reads say now.
      const { rooms } = await connectMy(clients, U);
      assert.deepEqual(rooms, [entry(room, 5, 5)]);
      assert.deepEqual((await myRoomsHttp(srv, U.token)).body, { rooms: [entry(room, 5, 5)] });
      assert.equal(membershipOf(await membersHttp(srv, room), U.userId).lastReadSeq, 5);
    });

    test("leaveRoom {forget: true}: a new myRooms on every connection, gone from the members, not listed again; a rejoin finds the same read mark", async () => {
      const U = newUser("Leaver");
      const [keep, gone] = [newRoom("keep"), newRoom("gone")];
      const { c: c1 } = await connectMy(clients, U);
      await c1.join(keep);
      await c1.join(gone);
      const { v } = await post(clients, [gone], [3]);
      assert.deepEqual(await c1.ask("markRead", { roomId: gone, seq: 2 }), { ok: true, lastReadSeq: 2 });
      const { c: c2, rooms } = await connectMy(clients, U);
      assert.deepEqual(rooms, [entry(keep), entry(gone, 3, 2)].sort((x, y) => byId(x.roomId, y.roomId)));
      const before1 = c1.rec.count("myRooms");
      const before2 = c2.rec.count("myRooms");

      assert.deepEqual(await c1.ask("leaveRoom", { roomId: gone, forget: true }), { ok: true });
      await latest(c1, "myRooms", [entry(keep)], "myRooms after forget (leaving connection)", before1);
      await latest(c2, "myRooms", [entry(keep)], "myRooms after forget (other connection)", before2);
      // Gone from the room live and as a member; the other member stays.
      assert.deepEqual(await c1.ask("sendMessage", { roomId: gone, text: "still here?" }), err("not_in_room"));
      const members = await membersHttp(srv, gone);
      assert.equal(membershipOf(members, U.userId), undefined, JSON.stringify(members));
      assert.deepEqual(members.memberships.map((m) => m.userId), [v.userId]);
      // Not listed on a new connection, nor by HTTP.
      const { c: c3, rooms: after } = await connectMy(clients, U);
      assert.deepEqual(after, [entry(keep)]);
      assert.deepEqual((await myRoomsHttp(srv, U.token)).body, { rooms: [entry(keep)] });

      // A rejoin after one more message: the read mark was kept (unread 2, not 4).
      await v.send(gone, "while away");
      const k = c3.rec.count("myRooms");
      await c3.join(gone);
      await latest(c3, "myRooms", [entry(keep), entry(gone, 4, 2)].sort((x, y) => byId(x.roomId, y.roomId)), "myRooms after the rejoin", k);
      assert.equal(membershipOf(await membersHttp(srv, gone), U.userId)?.lastReadSeq, 2);

      // Forgetting a room one is not a member of is no error and changes nothing.
      const never = newRoom("never");
      assert.deepEqual(await c3.ask("leaveRoom", { roomId: never, forget: true }), { ok: true });
      assert.deepEqual((await myRoomsHttp(srv, U.token)).body.rooms.map((r) => r.roomId), [keep, gone].sort(byId));
      // forget must be a boolean.
      for (const forget of ["yes", 1, {}]) {
        assert.deepEqual(await c3.ask("leaveRoom", { roomId: keep, forget }), err("invalid_payload"), JSON.stringify(forget));
      }
    });

    test("leaveRoom without forget and a plain disconnect keep the membership", async () => {
      const U = newUser("Stayer");
      const [r1, r2] = [newRoom("stay"), newRoom("stay")].sort(byId);
      const { c: c1 } = await connectMy(clients, U);
      await c1.join(r1);
      await c1.join(r2);
      assert.deepEqual(await c1.ask("leaveRoom", { roomId: r1 }), { ok: true });
      assert.deepEqual(await c1.ask("leaveRoom", { roomId: r2, forget: false }), { ok: true });
      assert.deepEqual(await c1.ask("history", { roomId: r1 }), err("not_in_room"), "left the live room");
      for (const r of [r1, r2]) {
        await membersUntil(srv, r, (b) => membershipOf(b, U.userId)?.online === false, `${U.userId} a member of ${r}, not online`);
      }
      clients.closeOne(c1);
      const { c: c2, rooms } = await connectMy(clients, U);
      assert.deepEqual(rooms, [entry(r1), entry(r2)]);
      // Joined again, then the connection just goes away.
      const ack = await c2.ask("joinRooms", {});
      assert.deepEqual(ack.rooms.map((r) => r.ok), [true, true]);
      await membersUntil(srv, r1, (b) => membershipOf(b, U.userId)?.online === true, `${U.userId} online in ${r1}`);
      clients.closeOne(c2);
      await membersUntil(srv, r1, (b) => membershipOf(b, U.userId)?.online === false, `${U.userId} offline in ${r1}`);
      const { rooms: after } = await connectMy(clients, U);
      assert.deepEqual(after, [entry(r1), entry(r2)]);
    });

    test("GET /api/users/me/rooms answers the myRooms list for the token's user; an API key is refused with 400", async () => {
      const U = newUser("Http");
      const [r1, r2] = [newRoom("http"), newRoom("http")].sort(byId);
      const { c } = await connectMy(clients, U);
      assert.deepEqual(await myRoomsHttp(srv, U.token), { status: 200, body: { rooms: [] } });
      await c.join(r2);
      await c.join(r1);
      await post(clients, [r1, r2], [2, 3]);
      assert.deepEqual(await c.ask("markRead", { roomId: r2, seq: 1 }), { ok: true, lastReadSeq: 1 });
      const { rooms } = await connectMy(clients, U);
      assert.deepEqual(rooms, [entry(r1, 2), entry(r2, 3, 1)]);
      const got = await myRoomsHttp(srv, U.token);
      assert.equal(got.status, 200);
      assert.deepEqual(got.body, { rooms });
      // Another user's token: their own (empty) list.
      assert.deepEqual((await myRoomsHttp(srv, newUser().token)).body, { rooms: [] });
      // The API key names no user.
      for (const headers of [{ "x-api-key": KEY }, { authorization: `Bearer ${KEY}` }]) {
        const r = await request(`${srv.url}/api/users/me/rooms`, { headers });
        assert.equal(r.status, 400, r.text);
        assert.equal(JSON.parse(r.text).error, "invalid_payload");
      }
      const none = await request(`${srv.url}/api/users/me/rooms`);
      assert.equal(none.status, 401, none.text);
      const expired = signToken({ sub: U.userId, name: U.name, exp: nowS() - 3600 });
      assert.equal((await myRoomsHttp(srv, expired)).status, 401);
    });

    test("GET /api/rooms/{id}/members lists offline members (online:false) with lastReadSeq, the latest username and the first joinedAt", async () => {
      const room = newRoom("members");
      const t0 = Date.now();
      const U = newUser("Old Name");
      const { c: u } = await connectMy(clients, U);
      await u.join(room);
      const t1 = Date.now();
      const { v } = await post(clients, [room], [3]);
      assert.deepEqual(await u.ask("markRead", { roomId: room, seq: 2 }), { ok: true, lastReadSeq: 2 });
      clients.closeOne(u);
      const body = await membersUntil(srv, room, (b) => membershipOf(b, U.userId)?.online === false, `${U.userId} offline`);
      assert.equal(body.roomId, room);
      assert.equal(body.lastSeq, 3);
      assert.deepEqual(body.members, [v.userId], "present: the poster only");
      assert.deepEqual(
        body.memberships.map((m) => m.userId),
        [U.userId, v.userId].sort(byId),
        "every member, sorted by user id",
      );
      const mine = membershipOf(body, U.userId);
      assert.deepEqual(Object.keys(mine).sort(), ["joinedAt", "lastReadSeq", "online", "userId", "username"]);
      assert.deepEqual({ ...mine, joinedAt: undefined }, { userId: U.userId, username: "Old Name", online: false, lastReadSeq: 2, joinedAt: undefined });
      assert.ok(Number.isInteger(mine.joinedAt) && mine.joinedAt >= t0 - 1000 && mine.joinedAt <= t1 + 1000, `joinedAt ${mine.joinedAt} within [${t0}, ${t1}]`);
      assert.equal(membershipOf(body, v.userId).online, true);

      // The same user under a new name: the name is the latest join's, joinedAt the first's.
      const renamed = { ...U, name: "New Name", token: signToken({ sub: U.userId, name: "New Name", exp: nowS() + 3600 }) };
      const { c: again } = await connectMy(clients, renamed);
      await again.join(room);
      const now = await membersUntil(srv, room, (b) => membershipOf(b, U.userId)?.online === true, `${U.userId} online again`);
      assert.deepEqual(membershipOf(now, U.userId), { userId: U.userId, username: "New Name", online: true, lastReadSeq: 2, joinedAt: mine.joinedAt });
      assert.deepEqual(now.members.sort(byId), [U.userId, v.userId].sort(byId));
      // A room nobody joined.
      const empty = newRoom("empty");
      assert.deepEqual(await membersHttp(srv, empty), { roomId: empty, count: 0, members: [], memberships: [], lastSeq: 0 });
    });
  });
}

sharedTests("SQLite", () => startParley(BASE));

// Memory: the shared tests check memberships across connections of one process (their
// reconnects). The memory store keeps nothing across a restart, so there is no restart
// test for it.
sharedTests("memory", () => startParley(["--store", "memory", ...BASE]));

let redis;
sharedTests("Redis", () => startParley(["--store", "redis", "--redis-url", redis.url, ...BASE]), {
  before: async () => {
    redis = await startRedis();
  },
  after: async () => {
    await redis?.stop();
  },
});

// ---- joinRooms: the socket's room limit and the news of new memberships ----

describe("membership: joinRooms limits and news", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--max-rooms-per-socket", "4", ...BASE]));

  test(
    "a joinRooms entry refused with too_many_rooms makes no membership",
    async () => {
      const { srv, clients } = box;
      const U = newUser("Greedy");
      const { c } = await connectMy(clients, U);
      const ids = Array.from({ length: 10 }, () => newRoom("greedy")).sort(byId);
      const ack = await c.ask("joinRooms", { roomIds: ids });
      assert.deepEqual(
        ack.rooms.map((r) => (r.ok ? "ok" : r.error)),
        ids.map((_, i) => (i < 4 ? "ok" : "too_many_rooms")),
      );
      assert.deepEqual((await myRoomsHttp(srv, U.token)).body.rooms.map((r) => r.roomId), ids.slice(0, 4));
    },
  );

  test(
    "joinRooms that makes a new membership sends myRooms to the user's connections, as joinRoom does",
    async () => {
      const { clients } = box;
      const U = newUser("Batch");
      const { c: c1 } = await connectMy(clients, U);
      const { c: c2 } = await connectMy(clients, U);
      const fresh = newRoom("batch");
      const k = c2.rec.count("myRooms");
      assert.deepEqual((await c1.ask("joinRooms", { roomIds: [fresh] })).rooms.map((r) => r.ok), [true]);
      await latest(c2, "myRooms", [entry(fresh)], "myRooms on the other connection", k, 3000);
    },
  );
});

// ---- SQLite: a restart on the same data directory ----

test("memberships, read marks and unread survive a restart of the SQLite store", async () => {
  const dir = tempDir("membership");
  let srv;
  const started = [];
  try {
    srv = await startParley(BASE, { dataDir: dir });
    started.push(srv);
    let clients = new Clients(srv);
    const U = newUser("Durable");
    const [r1, r2] = [newRoom("dur"), newRoom("dur")].sort(byId);
    const { c } = await connectMy(clients, U);
    await c.join(r1);
    await c.join(r2);
    const { v } = await post(clients, [r1, r2], [4, 2]);
    assert.deepEqual(await c.ask("markRead", { roomId: r1, seq: 3 }), { ok: true, lastReadSeq: 3 });
    const { rooms: before } = await connectMy(clients, U);
    assert.deepEqual(before, [entry(r1, 4, 3), entry(r2, 2, 0)]);
    clients.closeAll();
    await srv.stop();

    srv = await startParley(BASE, { dataDir: dir });
    started.push(srv);
    clients = new Clients(srv);
    const { c: back, rooms } = await connectMy(clients, U);
    assert.deepEqual(rooms, before, "myRooms after the restart");
    assert.deepEqual((await myRoomsHttp(srv, U.token)).body, { rooms: before });
    const members = await membersHttp(srv, r1);
    assert.deepEqual(
      members.memberships.map((m) => [m.userId, m.username, m.online, m.lastReadSeq]).sort((x, y) => byId(x[0], y[0])),
      [
        [U.userId, "Durable", false, 3],
        [v.userId, "Poster", false, 0],
      ].sort((x, y) => byId(x[0], y[0])),
    );
    assert.equal(members.lastSeq, 4);
    const ack = await back.ask("joinRooms", {});
    assert.deepEqual(ack.rooms.map((r) => [r.ok, r.roomId]), [
      [true, r1],
      [true, r2],
    ]);
    await back.rec.waitCount("messageHistory", 2);
    const seqs = back.rec.of("messageHistory").map((h) => `${h[0].roomId}:${h.map((m) => m.seq).join(",")}`);
    assert.deepEqual(seqs.sort(), [`${r1}:1,2,3,4`, `${r2}:1,2`].sort());
    clients.closeAll();
  } finally {
    for (const s of started) if (s.process.exitCode === null && s.process.signalCode === null) await s.stop();
    rmTemp(dir);
  }
});

// ---- --room-claim: only the rooms the token grants ----

describe("membership with --room-claim", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--room-claim", "rooms", ...BASE]));

  test("a room the token does not grant is neither listed in myRooms nor joined by joinRooms", async () => {
    const { srv, clients } = box;
    const userId = newUser().userId;
    const token = (rooms, name = "Claimed") => ({ userId, name, token: signToken({ sub: userId, name, exp: nowS() + 3600, rooms }) });
    const [granted, other] = [newRoom("claim"), newRoom("claim")].sort(byId);
    // With every room granted, the user becomes a member of both.
    const wide = token(["*"]);
    const { c: w } = await connectMy(clients, wide);
    await w.join(granted);
    await w.join(other);
    clients.closeOne(w);
    // A token granting one of them.
    const narrow = token([granted]);
    const { c, rooms } = await connectMy(clients, narrow);
    assert.deepEqual(rooms, [entry(granted)], "only the granted room is listed");
    assert.deepEqual((await myRoomsHttp(srv, narrow.token)).body, { rooms: [entry(granted)] });
    const ack = await c.ask("joinRooms", {});
    assert.deepEqual(ack.rooms.map((r) => [r.ok, r.roomId]), [[true, granted]]);
    await c.rec.waitCount("messageHistory", 1);
    assert.deepEqual(await c.ask("history", { roomId: other }), err("not_in_room"));
    // Asked for by name: refused, and still not joined.
    const named = await c.ask("joinRooms", { roomIds: [other, granted] });
    assert.deepEqual(named, { ok: true, rooms: [{ ok: false, roomId: other, error: "forbidden" }, named.rooms[1]] });
    assert.equal(named.rooms[1].ok, true);
    assert.deepEqual(await c.ask("history", { roomId: other }), err("not_in_room"));
    // The membership itself is untouched: the wide token still lists both.
    assert.deepEqual((await myRoomsHttp(srv, wide.token)).body, { rooms: [entry(granted), entry(other)] });
    // A token with no rooms claim at all grants nothing.
    const bare = { userId, name: "Bare", token: signToken({ sub: userId, name: "Bare", exp: nowS() + 3600 }) };
    const { c: b, rooms: none } = await connectMy(clients, bare);
    assert.deepEqual(none, []);
    assert.deepEqual(await b.ask("joinRooms", {}), { ok: true, rooms: [] });
  });
});

// ---- two nodes on one Redis store ----

describe("membership on two nodes with --store redis", () => {
  let redis, a, b, ca, cb;

  before(async () => {
    redis = await startRedis();
    const args = ["--store", "redis", "--redis-url", redis.url, ...BASE];
    [a, b] = await Promise.all([startParley(args), startParley(args)]);
    ca = new Clients(a);
    cb = new Clients(b);
  });

  after(async () => {
    ca?.closeAll();
    cb?.closeAll();
    await a?.stop();
    await b?.stop();
    a?.cleanup();
    b?.cleanup();
    await redis?.stop();
  });

  test("a membership made on node A is listed by myRooms on node B, with its read mark", async () => {
    const U = newUser("Roamer");
    const room = newRoom("nodes");
    const { c: onA } = await connectMy(ca, U);
    await onA.join(room);
    await post(cb, [room], [3]);
    assert.deepEqual(await onA.ask("markRead", { roomId: room, seq: 1 }), { ok: true, lastReadSeq: 1 });
    const { c: onB, rooms } = await connectMy(cb, U);
    assert.deepEqual(rooms, [entry(room, 3, 1)]);
    assert.deepEqual((await myRoomsHttp(b, U.token)).body, { rooms: [entry(room, 3, 1)] });
    // Read on node B: roomRead reaches the connection on node A.
    assert.deepEqual(await onB.ask("joinRooms", {}).then((x) => x.rooms.map((r) => r.ok)), [true]);
    assert.deepEqual(await onB.ask("markRead", { roomId: room, seq: 3 }), { ok: true, lastReadSeq: 3 });
    await latest(onA, "roomRead", { roomId: room, lastReadSeq: 3, lastSeq: 3, unread: 0 }, "roomRead on node A");
    // Forgotten on node B: node A's connection gets the new list.
    const k = onA.rec.count("myRooms");
    assert.deepEqual(await onB.ask("leaveRoom", { roomId: room, forget: true }), { ok: true });
    await latest(onA, "myRooms", [], "myRooms on node A after the forget on B", k);
  });
});
