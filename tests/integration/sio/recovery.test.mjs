// Connection state recovery (--recovery): after an abrupt transport drop, the reconnecting
// client gets its session back (same id, rooms, socket.data) and every packet it missed,
// exactly once and in order; not after --max-disconnection, and not after an explicit
// disconnect.
//
// The drop: dropTransport() (util.mjs) — websocket: the ws is terminated; polling: the TCP
// connections of its requests are destroyed. New connections are then refused ("network down")
// until restoreNetwork(), so the test decides when the client's automatic reconnection can
// succeed: after the server has recorded the disconnect and the other clients have broadcast.
// The server runs with a 300/300 ms heartbeat, so that a drop it could only notice through the
// heartbeat (e.g. one in the middle of an upgrade) does not take 45 s.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  ALL_TRANSPORTS,
  RawWs,
  Recorder,
  WS,
  ask,
  connected,
  dropTransport,
  droppable,
  normBin,
  once,
  optsFor,
  restoreNetwork,
  serverReasons,
  sioServerHooks,
  sleep,
  stats,
  waitStats,
  WORKERS,
} from "./util.mjs";

const HEARTBEAT = ["--ping-interval", "300", "--ping-timeout", "300"];
const RECOVERABLE = ["transport close", "transport error", "ping timeout"];

// Splits the offset (socket.io's recovery offset: a string, for the client opaque) off an
// event's args. Parley's is a decimal number, after the letter of its worker with
// --workers: offsets of one worker's log increase; those of two workers do not compare.
function offsetOf(args) {
  const last = args.at(-1);
  assert.equal(typeof last, "string", `no offset in ${JSON.stringify(args)}`);
  const m = /^([A-Za-z]?)(\d+)$/.exec(last);
  assert.ok(m, `not an offset: ${last}`);
  assert.equal(m[1] !== "", WORKERS > 1, `offset ${last}`);
  return { args: args.slice(0, -1), worker: m[1], offset: BigInt(m[2]) };
}

for (const tr of ALL_TRANSPORTS) {
  describe(`recovery over ${tr.name}`, () => {
    let srv, clients;
    const O = optsFor(tr);
    sioServerHooks((s, c) => ([srv, clients] = [s, c]), ["--recovery", ...HEARTBEAT]);

    // Drops t's transport with the network down, runs `meanwhile` at once (the server may not
    // have noticed yet), and waits until the server kept the session.
    async function dropAndWait(t, meanwhile = async () => {}) {
      const id = t.id;
      const d = once(t, "disconnect");
      const before = (await stats(srv)).recoverySessions;
      dropTransport(t, { downMs: 60000 });
      await meanwhile();
      const [reason] = await d;
      // (A drop in the middle of an upgrade may only be noticed by the client's heartbeat.)
      assert.ok(["transport close", "transport error", "ping timeout"].includes(reason), reason);
      const [why] = await serverReasons(srv, id, { timeoutMs: 5000 });
      assert.ok(RECOVERABLE.includes(why), why);
      await waitStats(srv, (st) => st.recoverySessions > before, "the session kept for recovery");
      return id;
    }

    test("transport drop: same id, rooms, data, and every missed packet once, in order", async () => {
      const sender = await clients.connect("/", WS.opts);
      const { s: t, rec } = await clients.connectRec("/", droppable(O()));
      assert.equal(t.recovered, false);
      assert.equal(await ask(t, "join", "room1"), true);
      assert.equal(await ask(t, "join", "room3"), true);
      assert.deepEqual(await ask(t, "dataSet", { user: "u1", n: 5 }), { user: "u1", n: 5 });

      // Before the drop: broadcasts carry an increasing offset as their last argument.
      for (let i = 0; i < 3; i++) assert.equal(await ask(sender, "broadcast", { event: "pre", args: [i], rooms: ["room1"] }), true);
      await rec.waitCount("pre", 3);
      const pre = rec.of("pre").map(offsetOf);
      assert.deepEqual(
        pre.map((p) => p.args),
        [[0], [1], [2]],
      );
      assert.ok(pre[0].offset < pre[1].offset && pre[1].offset < pre[2].offset, "offsets increase");

      // Sent right after the drop, possibly before the server noticed it (then it goes to the
      // dead connection, and only the recovery log can bring it back).
      const expected = [];
      const id = await dropAndWait(t, async () => {
        await ask(sender, "broadcast", { event: "m", args: [-1, "early"], rooms: ["room1"] });
        expected.push([-1, "early"]);
      });

      // While it is away.
      const bin = Buffer.from([1, 2, 3, 250]);
      for (let i = 0; i < 40; i++) {
        switch (i % 8) {
          case 0:
            await ask(sender, "broadcast", { event: "m", args: [i, "room1"], rooms: ["room1"] });
            expected.push([i, "room1"]);
            break;
          case 1:
            await ask(sender, "broadcast", { event: "m", args: [i, "all"] });
            expected.push([i, "all"]);
            break;
          case 2:
            await ask(sender, "broadcast", { event: "m", args: [i, "room2"], rooms: ["room2"] });
            break;
          case 3:
            // room1 but not room3: it is in room3, so not for it
            await ask(sender, "broadcast", { event: "m", args: [i, "except"], rooms: ["room1"], except: ["room3"] });
            break;
          case 4:
            await ask(sender, "broadcast", { event: "m", args: [i, "bin", { b: bin }], rooms: ["room3"] });
            expected.push([i, "bin", { b: bin }]);
            break;
          case 5:
            // volatile: never logged
            await ask(sender, "broadcast", { event: "m", args: [i, "volatile"], volatile: true });
            break;
          case 6:
            await ask(sender, "emitJson", { event: "m", json: `[${i},"json"]` });
            expected.push([i, "json"]);
            break;
          case 7:
            await ask(sender, "broadcast", { event: "m", args: [i, "others"], excludeSelf: true });
            expected.push([i, "others"]);
            break;
        }
      }

      restoreNetwork(t);
      const welcome = await rec.next("welcome", 10000);
      assert.equal(t.recovered, true, "socket.recovered");
      assert.equal(t.id, id, "same socket id");
      assert.deepEqual(offsetOf(welcome).args, [{ id, recovered: true }]);

      // Missed packets: exactly the expected ones, once each, in order, with offsets.
      const got = rec.of("m").map(offsetOf);
      assert.deepEqual(
        got.map((g) => normBin(g.args)),
        expected.map(normBin),
      );
      for (let i = 1; i < got.length; i++) assert.ok(got[i - 1].offset < got[i].offset, "offsets increase");
      assert.ok(got[0].offset > pre[2].offset);
      assert.equal(rec.count("pre"), 3, "nothing from before the drop is replayed");

      // Session state.
      const rooms = await ask(t, "rooms");
      assert.equal(rooms[0], id);
      assert.deepEqual(rooms.slice(1).sort(), ["room1", "room3"]);
      assert.deepEqual(await ask(t, "dataGet"), { user: "u1", n: 5 });
      assert.equal((await ask(t, "whoami")).recovered, true);
      const st = await stats(srv);
      assert.equal(st.recoverySessions, 0, "the session was taken (and no other was kept)");

      // And it keeps working, in its rooms.
      await ask(sender, "broadcast", { event: "post", args: ["x"], rooms: ["room1"] });
      assert.deepEqual(offsetOf(await rec.next("post")).args, ["x"]);
      assert.equal(rec.count("m"), expected.length, "no late duplicates");
    });

    test("several drops in a row, each recovered", async () => {
      const sender = await clients.connect("/", WS.opts);
      const { s: t, rec } = await clients.connectRec("/", droppable(O()));
      assert.equal(await ask(t, "join", "r"), true);
      const id = t.id;
      let n = 0;
      for (let round = 0; round < 3; round++) {
        await dropAndWait(t);
        for (let k = 0; k < 5; k++) await ask(sender, "broadcast", { event: "m", args: [n++], rooms: ["r"] });
        restoreNetwork(t);
        await rec.next("welcome", 10000);
        assert.equal(t.recovered, true, `round ${round}`);
        assert.equal(t.id, id);
        assert.deepEqual(
          rec.of("m").map((a) => offsetOf(a).args[0]),
          Array.from({ length: n }, (_, i) => i),
        );
      }
    });

    test("multiplexed namespaces are recovered together", async () => {
      const sender = await clients.connect("/", WS.opts);
      const senderAdmin = await clients.connect("/admin", { ...WS.opts, auth: { token: "secret" } });
      const { s: root, rec: rr } = await clients.connectRec("/", droppable(O()));
      const admin = clients.openOn(root, "/admin", { auth: { token: "secret" } });
      const ra = new Recorder(admin);
      await connected(admin);
      await ra.next("welcome");
      await ask(admin, "join", "adm-room");
      await ask(admin, "dataSet", { role: "admin" });
      const ids = [root.id, admin.id];
      const d = once(admin, "disconnect");
      await dropAndWait(root);
      await d;
      await waitStats(srv, (st) => st.recoverySessions >= 2, "both sessions kept");
      await ask(sender, "broadcast", { event: "m", args: ["root"] });
      await ask(senderAdmin, "broadcast", { event: "m", args: ["admin"], rooms: ["adm-room"] });
      restoreNetwork(root);
      await rr.next("welcome", 10000);
      await ra.next("welcome", 10000);
      assert.equal(root.recovered, true);
      assert.equal(admin.recovered, true);
      assert.deepEqual([root.id, admin.id], ids);
      assert.deepEqual(rr.of("m").map((a) => offsetOf(a).args), [["root"]]);
      assert.deepEqual(ra.of("m").map((a) => offsetOf(a).args), [["admin"]]);
      assert.deepEqual(await ask(admin, "dataGet"), { role: "admin" });
      assert.ok((await ask(admin, "rooms")).includes("adm-room"));
    });

    test("explicit client disconnect, then connect: not recovered", async () => {
      const sender = await clients.connect("/", WS.opts);
      const { s: t, rec } = await clients.connectRec("/", O());
      await ask(t, "join", "room1");
      await ask(t, "dataSet", { k: 1 });
      const id = t.id;
      const kept = (await stats(srv)).recoverySessions;
      t.disconnect();
      assert.deepEqual(await serverReasons(srv, id), ["client namespace disconnect"]);
      assert.equal((await stats(srv)).recoverySessions, kept, "nothing kept");
      await ask(sender, "broadcast", { event: "m", args: [1], rooms: ["room1"] });
      t.connect();
      const welcome = await rec.next("welcome");
      assert.equal(t.recovered, false);
      assert.notEqual(t.id, id);
      assert.deepEqual(offsetOf(welcome).args, [{ id: t.id, recovered: false }]);
      assert.deepEqual(await ask(t, "rooms"), [t.id]);
      assert.deepEqual(await ask(t, "dataGet"), {});
      assert.equal(rec.count("m"), 0);
    });

    test("server-side namespace disconnect, then connect: not recovered", async () => {
      const { s: t, rec } = await clients.connectRec("/", O());
      const id = t.id;
      const d = once(t, "disconnect");
      t.emit("disconnectMe", { close: false });
      assert.equal((await d)[0], "io server disconnect");
      assert.deepEqual(await serverReasons(srv, id), ["server namespace disconnect"]);
      t.connect();
      await rec.next("welcome");
      assert.equal(t.recovered, false);
      assert.notEqual(t.id, id);
    });

    test("a recovered socket skips the namespace middleware (socket.io's skipMiddlewares default)", async () => {
      const { s: root } = await clients.connectRec("/", droppable(O()));
      const admin = clients.openOn(root, "/admin", { auth: { token: "secret" } });
      const ra = new Recorder(admin);
      await connected(admin);
      await ra.next("welcome");
      const { _pid: pid, _lastOffset: offset, id } = admin;
      assert.equal(typeof pid, "string");
      assert.equal(typeof offset, "string");
      const d = once(admin, "disconnect");
      await dropAndWait(root);
      await d;
      await waitStats(srv, (st) => st.recoverySessions >= 2, "both sessions kept");
      // A raw client offering the session without the token: recovered, not refused.
      const raw = new RawWs(srv, { autoPong: true });
      try {
        await raw.open();
        raw.send(`40/admin,${JSON.stringify({ pid, offset })}`);
        const reply = await raw.next();
        assert.equal(reply, `40/admin,${JSON.stringify({ sid: id, pid })}`);
        const welcome = await raw.next();
        assert.match(welcome, /^42\/admin,\["welcome",\{"id":"[^"]+","recovered":true\},"[A-Za-z]?\d+"\]$/);
        // The recovered socket works.
        raw.send('42/admin,5["echo","x"]');
        assert.match(await raw.next(), /^42\/admin,\["echo","x","[A-Za-z]?\d+"\]$/);
        assert.equal(await raw.next(), '43/admin,5["x"]');
      } finally {
        raw.terminate();
      }
      // Without a session to recover (unknown pid), the middleware runs: refused.
      const raw2 = new RawWs(srv, { autoPong: true });
      try {
        await raw2.open();
        raw2.send(`40/admin,${JSON.stringify({ pid: "no-such-pid", offset })}`);
        assert.equal(await raw2.next(), '44/admin,{"message":"not authorized","data":{"code":"E_AUTH"}}');
      } finally {
        raw2.terminate();
      }
      restoreNetwork(root);
    });

    test("a forged or unknown pid/offset is not recovered", async () => {
      // A real session to aim at.
      const { s: t } = await clients.connectRec("/", droppable(O()));
      await ask(t, "join", "secret-room");
      const pid = t._pid;
      assert.equal(typeof pid, "string");
      await dropAndWait(t);
      for (const auth of [{ pid: "not-a-pid", offset: "1" }, { pid, offset: "999999999" }, { pid, offset: "abc" }]) {
        const raw = new RawWs(srv, { autoPong: true });
        try {
          await raw.open();
          raw.send(`40${JSON.stringify(auth)}`);
          const reply = JSON.parse((await raw.next()).slice(2));
          assert.notEqual(reply.sid, t.id, JSON.stringify(auth));
          assert.equal(typeof reply.pid, "string");
          const welcome = JSON.parse((await raw.next()).slice(2));
          assert.equal(welcome[0], "welcome");
          assert.deepEqual(welcome[1], { id: reply.sid, recovered: false });
        } finally {
          raw.terminate();
        }
      }
      restoreNetwork(t);
    });
  });
}

describe("recovery after --max-disconnection", () => {
  let srv, clients;
  const MAX = 400;
  sioServerHooks((s, c) => ([srv, clients] = [s, c]), ["--recovery", "--max-disconnection", String(MAX), ...HEARTBEAT], {
    idle: false,
  });

  for (const tr of [WS, ...ALL_TRANSPORTS.filter((x) => x !== WS)]) {
    test(`over ${tr.name}: expired, so a fresh session`, async () => {
      const sender = await clients.connect("/", WS.opts);
      const { s: t, rec } = await clients.connectRec("/", droppable(tr.opts));
      await ask(t, "join", "room1");
      await ask(t, "dataSet", { k: 1 });
      const id = t.id;
      const d = once(t, "disconnect");
      dropTransport(t, { downMs: 60000 });
      await d;
      await serverReasons(srv, id, { timeoutMs: 5000 });
      await ask(sender, "broadcast", { event: "m", args: [1], rooms: ["room1"] });
      await sleep(MAX + 200);
      restoreNetwork(t);
      const welcome = await rec.next("welcome", 10000);
      assert.equal(t.recovered, false);
      assert.notEqual(t.id, id);
      assert.deepEqual(offsetOf(welcome).args, [{ id: t.id, recovered: false }]);
      assert.deepEqual(await ask(t, "rooms"), [t.id]);
      assert.deepEqual(await ask(t, "dataGet"), {});
      assert.equal(rec.count("m"), 0, "nothing replayed");
      clients.closeAll();
      // The purge (every second at most) drops expired sessions and packets.
      await waitStats(srv, (st) => st.recoverySessions === 0 && st.recoveryPackets === 0 && st.clients === 0, "purged", 5000);
    });
  }
});
