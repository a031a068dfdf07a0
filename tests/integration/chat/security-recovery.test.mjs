// Connection state recovery is bound to the user (security review, issue 11, defect 6).
//
// A session kept for recovery is restored only to a connection whose token names the same
// user (`sub`) as the one the session was made for: another user who learnt the victim's pid
// and offset gets a fresh session (a new sid, none of the victim's rooms, none of its room
// messages or direct messages), and the victim can still recover. And with --room-claim, a
// connection never gets back (by recovery, or by chained recoveries) into a room its new
// token no longer grants: it is not in that room, does not receive what was posted there
// while it was away or after, and is not counted present there.
//
// socket.io-client sends {pid, offset} with its auth on a reconnection, and lets the auth
// object override them, so a test can present any pid and offset with any token.
import { test, describe, before, beforeEach, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  Client,
  WS,
  connected,
  health,
  newRoom,
  newUser,
  nowS,
  serverPerSuite,
  signToken,
  startParley,
  waitUntil,
  withTimeout,
} from "./util.mjs";

// Drops a websocket client's connection abruptly (TCP closed without a close frame, so the
// server keeps its session for recovery) and waits until the server has let go of the socket.
async function drop(srv, c) {
  const before = (await health(srv)).sockets;
  const gone = new Promise((resolve) => c.s.once("disconnect", resolve));
  c.s.io.engine.transport.ws.terminate();
  await withTimeout(gone, 5000, "the client to notice the drop");
  await waitUntil(async () => (await health(srv)).sockets < before, { timeoutMs: 5000, what: "the server to notice the drop" });
}

// What a client needs to recover its session: pid, last offset, sid.
function sessionOf(c) {
  const s = { pid: c.s._pid, offset: c.s._lastOffset, sid: c.s.id };
  assert.ok(s.pid && s.offset && s.sid, `the client has a session to recover: ${JSON.stringify(s)}`);
  return s;
}

// Opens a connection with {token, pid, offset} (a recovery attempt with any token).
async function reconnectWith(clients, user, token, session) {
  const c = new Client(clients.open({ token, pid: session.pid, offset: session.offset }), user);
  clients.all.add(c);
  await connected(c.s);
  return c;
}

describe("recovery bound to the user", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--store", "memory"]), WS);
  let srv;
  let clients;
  beforeEach(() => {
    ({ srv, clients } = box);
  });

  test("another user's token with the victim's pid and offset gets a fresh session; the victim still recovers", async () => {
    const room = newRoom();
    const victimUser = newUser("Victim");
    const victim = await clients.connect(victimUser);
    await victim.join(room);
    const other = await clients.connect(newUser("Other"));
    await other.join(room);
    await other.send(room, "before");
    assert.equal((await victim.rec.next("newMessage")).text, "before");
    const session = sessionOf(victim);
    await drop(srv, victim);

    const mallory = newUser("Mallory");
    const m = await reconnectWith(clients, mallory, mallory.token, session);
    assert.notEqual(m.s.id, session.sid, "not the victim's sid");
    await other.send(room, "while away");
    assert.deepEqual(await other.ask("sendDirect", { toUserId: victimUser.userId, text: "secret" }), { ok: true });
    await m.flush();
    assert.equal(m.rec.count("newMessage"), 0, "none of the victim's room messages");
    assert.equal(m.rec.count("directMessage"), 0, "none of the victim's direct messages");
    assert.deepEqual(await m.ask("sendMessage", { roomId: room, text: "as the victim?" }), { ok: false, error: "not_in_room" });
    const members = (await other.ask("joinRoom", { roomId: room })).members;
    assert.ok(!members.includes(mallory.userId), `mallory is not present in the room: ${members}`);

    // The kept session is still the victim's.
    victim.s.connect();
    await connected(victim.s);
    assert.equal(victim.s.recovered, true, "the victim recovers");
    assert.equal(victim.s.id, session.sid);
    await victim.rec.waitCount("newMessage", 2);
    await victim.rec.waitCount("directMessage", 1);
    assert.equal(victim.rec.of("newMessage")[1].text, "while away");
    assert.equal(victim.rec.of("directMessage")[0].text, "secret");
    await victim.send(room, "back");
  });

  test("a session of the same user, with a new token, is restored", async () => {
    const room = newRoom();
    const u = newUser("Same");
    const c = await clients.connect(u);
    await c.join(room);
    const other = await clients.connect();
    await other.join(room);
    await other.send(room, "m1");
    await c.rec.next("newMessage");
    const session = sessionOf(c);
    await drop(srv, c);
    await other.send(room, "m2");
    const fresh = signToken({ sub: u.userId, name: u.name, iat: nowS(), exp: nowS() + 600 });
    const back = await reconnectWith(clients, u, fresh, session);
    assert.equal(back.s.id, session.sid, "same sid: restored");
    assert.equal((await back.rec.next("newMessage")).text, "m2", "what it missed");
    await back.send(room, "still a member");
  });
});

describe("recovery and the room claim", () => {
  const box = serverPerSuite(
    { before, after, afterEach },
    () => startParley(["--store", "memory", "--room-claim", "rooms"]),
    WS,
  );
  let srv;
  let clients;
  beforeEach(() => {
    ({ srv, clients } = box);
  });

  const tokenFor = (u, rooms) => signToken({ sub: u.userId, name: u.name, iat: nowS(), exp: nowS() + 600, rooms });

  test("a token that no longer grants a room does not get back into it, across chained recoveries", async () => {
    const kept = newRoom("kept");
    const dropped = newRoom("dropped");
    const u = newUser("Narrowed", { rooms: [kept, dropped] });
    const c = await clients.connect(u);
    await c.join(kept);
    await c.join(dropped);
    const other = await clients.connect(newUser("Other", { rooms: ["*"] }));
    await other.join(kept);
    await other.join(dropped);
    await other.send(dropped, "seen");
    assert.equal((await c.rec.next("newMessage")).text, "seen");
    let session = sessionOf(c);
    await drop(srv, c);
    await other.send(dropped, "missed in dropped");

    const narrow = tokenFor(u, [kept]);
    let back = await reconnectWith(clients, u, narrow, session);
    for (let round = 1; round <= 2; round++) {
      await other.send(dropped, `after, round ${round}`);
      await back.flush();
      const leaked = back.rec.of("newMessage").filter((m) => m.roomId === dropped);
      assert.deepEqual(leaked, [], `round ${round}: nothing from the room the token no longer grants`);
      assert.deepEqual(await back.ask("sendMessage", { roomId: dropped, text: "x" }), { ok: false, error: "not_in_room" });
      assert.deepEqual(await back.ask("joinRoom", { roomId: dropped }), { ok: false, error: "forbidden" });
      const members = (await other.ask("joinRoom", { roomId: dropped })).members;
      assert.ok(!members.includes(u.userId), `round ${round}: not counted present in the dropped room: ${members}`);
      // The granted room works (joined again if the session was not restored).
      if (!(await back.ask("sendMessage", { roomId: kept, text: `in kept ${round}` })).ok) {
        await back.join(kept);
        await back.send(kept, `in kept ${round}`);
      }
      // Chain: drop again, come back with the same narrowed token.
      session = sessionOf(back);
      await drop(srv, back);
      back = await reconnectWith(clients, u, narrow, session);
    }
    assert.equal(back.s.id, session.sid, "the narrowed token recovers its own (narrowed) session");
    await back.send(kept, "kept works after the chain");
  });

  test("a token with the same rooms recovers with them", async () => {
    const room = newRoom();
    const u = newUser("Steady", { rooms: [room] });
    const c = await clients.connect(u);
    await c.join(room);
    const other = await clients.connect(newUser("Other", { rooms: ["*"] }));
    await other.join(room);
    await other.send(room, "m1");
    await c.rec.next("newMessage");
    const session = sessionOf(c);
    await drop(srv, c);
    await other.send(room, "m2");
    const back = await reconnectWith(clients, u, tokenFor(u, [room, "another"]), session);
    assert.equal(back.s.id, session.sid, "restored");
    assert.equal((await back.rec.next("newMessage")).text, "m2");
    await back.send(room, "still here");
  });
});
