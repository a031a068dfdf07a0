// Rooms and broadcasting: join/leave, rooms/except/namespace-wide/excludeSelf/allNamespaces
// targets, socketsJoin/socketsLeave/fetchSockets/disconnectSockets, volatile, pre-encoded
// (emitJson) broadcasts, and de-duplication over 200 sockets in overlapping rooms.
//
// "Did NOT receive" is proven without sleeping: after each broadcast a marker is broadcast to
// the whole namespace; packets reach a connection in the order the server emitted them, so
// once a socket has the marker, anything it was going to get from the broadcast is there.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  ALL_TRANSPORTS,
  Clients,
  RawPolling,
  Recorder,
  TRANSPORTS,
  WS,
  WORKERS,
  ask,
  connected,
  once,
  parseEvent,
  serverReasons,
  sleep,
  startSio,
  stats,
  waitIdle,
  waitStats,
  optsFor,
  sioServerHooks,
} from "./util.mjs";

const sorted = (a) => [...a].sort();

for (const tr of ALL_TRANSPORTS) {
  describe(`rooms over ${tr.name}`, () => {
    let srv, clients;
    const O = optsFor(tr);
    sioServerHooks((s, c) => ([srv, clients] = [s, c]));

    // Connects named sockets on "/" with recorders; joins the given rooms.
    async function group(spec) {
      const g = {};
      await Promise.all(
        Object.entries(spec).map(async ([name, rooms]) => {
          const { s, rec } = await clients.connectRec("/", O());
          for (const r of rooms) assert.equal(await ask(s, "join", r), true);
          g[name] = { s, rec, name };
        }),
      );
      return g;
    }

    let seq = 0;
    // Broadcasts from `from` with `opts` (event/args filled in) and returns the names of the
    // group's sockets that received it, checking each got it at most once and intact.
    async function deliver(g, from, opts) {
      const n = ++seq;
      const ev = `ev${n}`;
      const marker = `mark${n}`;
      const args = [n, { tag: `t${n}` }];
      assert.equal(await ask(g[from].s, "broadcast", { event: ev, args, ...opts }), true);
      assert.equal(await ask(g[from].s, "broadcast", { event: marker, args: [] }), true);
      const got = [];
      for (const m of Object.values(g)) {
        await m.rec.next(marker);
        const c = m.rec.count(ev);
        assert.ok(c <= 1, `${m.name} got ${ev} ${c} times`);
        if (c) {
          assert.deepEqual(m.rec.of(ev)[0], args);
          got.push(m.name);
        }
      }
      return sorted(got);
    }

    test("join / leave / rooms", async () => {
      const { s } = await clients.connectRec("/", O());
      const rooms0 = await ask(s, "rooms");
      assert.deepEqual(rooms0, [s.id], "a socket starts in its own room");
      assert.equal(await ask(s, "join", "r1"), true);
      assert.equal(await ask(s, "join", "r2"), true);
      assert.equal(await ask(s, "join", "r1"), true, "joining twice is harmless");
      let rooms = await ask(s, "rooms");
      assert.equal(rooms[0], s.id, "own id first");
      assert.deepEqual(sorted(rooms.slice(1)), ["r1", "r2"]);
      assert.equal(await ask(s, "leave", "r1"), true);
      assert.equal(await ask(s, "leave", "not-a-member"), true);
      rooms = await ask(s, "rooms");
      assert.deepEqual(rooms, [s.id, "r2"]);
      // A room name that is somebody else's id works as a room.
      const { s: t } = await clients.connectRec("/", O());
      assert.equal(await ask(s, "join", t.id), true);
      assert.deepEqual(sorted(await ask(s, "fetchSockets", { rooms: [t.id] })), sorted([s.id, t.id]));
    });

    test("broadcast targets: rooms, except, namespace, excludeSelf", async () => {
      const g = await group({ A: ["r1"], B: ["r2"], C: ["r1", "r2"], D: [] });
      const cases = [
        ["A", { rooms: ["r1"] }, ["A", "C"]],
        ["A", { rooms: ["r2"] }, ["B", "C"]],
        ["D", { rooms: ["r1", "r2"] }, ["A", "B", "C"]],
        ["D", {}, ["A", "B", "C", "D"]],
        ["A", { except: ["r2"] }, ["A", "D"]],
        ["B", { rooms: ["r1"], except: ["r2"] }, ["A"]],
        ["A", { rooms: ["r1", "r2"], except: ["r1"] }, ["B"]],
        ["A", { rooms: ["nobody-here"] }, []],
        ["A", { except: ["nobody-here"] }, ["A", "B", "C", "D"]],
        ["A", { rooms: [g.B.s.id] }, ["B"]],
        ["A", { rooms: [g.A.s.id, "r1", "r2"] }, ["A", "B", "C"]],
        ["A", { rooms: ["r1"], except: [g.C.s.id] }, ["A"]],
        ["A", { excludeSelf: true }, ["B", "C", "D"]],
        ["C", { excludeSelf: true, rooms: ["r1"] }, ["A"]],
        ["A", { excludeSelf: true, except: ["r2"] }, ["D"]],
        ["D", { excludeSelf: true, rooms: ["r2"], except: ["r1"] }, ["B"]],
      ];
      for (const [from, opts, want] of cases) {
        assert.deepEqual(await deliver(g, from, opts), want, `${from} ${JSON.stringify(opts)}`);
      }
      // After leaving, a socket is no longer targeted.
      assert.equal(await ask(g.C.s, "leave", "r1"), true);
      assert.deepEqual(await deliver(g, "A", { rooms: ["r1"] }), ["A"]);
    });

    test("allNamespaces reaches every namespace once", async () => {
      const { s: root, rec: rr } = await clients.connectRec("/", O());
      const { rec: ra } = await clients.connectRec("/admin", O({ auth: { token: "secret" } }));
      const { rec: rd } = await clients.connectRec("/dyn-all", O());
      const { rec: rs } = await clients.connectRec("/slow", O());
      // Multiplexed on root's connection too.
      const mux = clients.openOn(root, "/dyn-all");
      const rm = new Recorder(mux);
      await connected(mux);
      await rm.next("welcome");
      assert.equal(await ask(root, "join", "r1"), true);
      assert.equal(await ask(root, "broadcast", { event: "all", args: ["x", 1], allNamespaces: true }), true);
      for (const rec of [rr, ra, rd, rs, rm]) assert.deepEqual(await rec.next("all"), ["x", 1]);
      // Exactly once each: a second, namespace-local marker arrives after it in "/" only, and
      // the echo round trips prove nothing else was queued.
      for (const rec of [rr, ra, rd, rs, rm]) {
        await ask(rec.socket, "echo", "sync");
        assert.equal(rec.count("all"), 1);
      }
    });

    test("socketsJoin / socketsLeave / fetchSockets", async () => {
      const g = await group({ A: ["r1"], B: ["r2"], C: ["r1", "r2"], D: [] });
      const id = (...names) => sorted(names.map((n) => g[n].s.id));
      const fetch = async (target) => sorted(await ask(g.D.s, "fetchSockets", target));
      assert.deepEqual(await fetch({}), id("A", "B", "C", "D"));
      assert.deepEqual(await fetch({ rooms: ["r1"] }), id("A", "C"));
      assert.deepEqual(await fetch({ rooms: ["r1", "r2"] }), id("A", "B", "C"));
      assert.deepEqual(await fetch({ rooms: ["r1"], except: ["r2"] }), id("A"));
      assert.deepEqual(await fetch({ except: ["r1"] }), id("B", "D"));
      assert.deepEqual(await fetch({ rooms: ["none"] }), []);

      assert.equal(await ask(g.D.s, "socketsJoin", { rooms: ["r1"], room: "r3" }), true);
      assert.deepEqual(await fetch({ rooms: ["r3"] }), id("A", "C"));
      assert.ok((await ask(g.A.s, "rooms")).includes("r3"));
      assert.deepEqual(await deliver(g, "B", { rooms: ["r3"] }), ["A", "C"]);

      assert.equal(await ask(g.A.s, "socketsJoin", { except: ["r1"], room: "r4" }), true);
      assert.deepEqual(await fetch({ rooms: ["r4"] }), id("B", "D"));

      assert.equal(await ask(g.A.s, "socketsLeave", { rooms: ["r3"], except: ["r2"], room: "r3" }), true);
      assert.deepEqual(await fetch({ rooms: ["r3"] }), id("C"));
      assert.ok(!(await ask(g.A.s, "rooms")).includes("r3"));

      assert.equal(await ask(g.B.s, "socketsLeave", { room: "r1" }), true);
      assert.deepEqual(await fetch({ rooms: ["r1"] }), []);
      assert.deepEqual(await deliver(g, "B", { rooms: ["r1"] }), []);
      // Each socket's own room survives everything.
      assert.deepEqual(await fetch({ rooms: [g.A.s.id] }), id("A"));
    });

    test("disconnectSockets (close: false) disconnects the target sockets only", async () => {
      const g = await group({ A: ["r1"], B: ["r2"], C: ["r1", "r2"], D: [] });
      const bId = g.B.s.id;
      const cId = g.C.s.id;
      const gone = [once(g.B.s, "disconnect"), once(g.C.s, "disconnect")];
      assert.equal(await ask(g.A.s, "disconnectSockets", { rooms: ["r2"], close: false }), true);
      const [[rb], [rc]] = await Promise.all(gone);
      assert.equal(rb, "io server disconnect");
      assert.equal(rc, "io server disconnect");
      assert.deepEqual(await serverReasons(srv, bId), ["server namespace disconnect"]);
      assert.deepEqual(await serverReasons(srv, cId), ["server namespace disconnect"]);
      assert.equal(g.A.s.connected, true);
      assert.equal(g.D.s.connected, true);
      assert.deepEqual(await deliver({ A: g.A, D: g.D }, "D", {}), ["A", "D"]);
      await waitStats(srv, (st) => st.sockets === 2, "2 sockets left");

      // (The requester itself being a target is tested below, on its own server.)
    });

    test("volatile broadcast to an idle socket is delivered", async () => {
      const { s: sender } = await clients.connectRec("/", O());
      const { s: target, rec } = await clients.connectRec("/", O());
      assert.equal(await ask(target, "join", "vroom"), true);
      // Idle: over polling, delivery needs a GET held by the server, which the client re-issues
      // right after each response; give it time to get there (nothing to await on; see README).
      if (tr === WS) await ask(target, "echo", 0);
      else await sleep(300);
      assert.equal(await ask(sender, "broadcast", { event: "vol", args: [1], rooms: ["vroom"], volatile: true }), true);
      assert.deepEqual(await rec.next("vol"), [1]);
      assert.equal(await ask(sender, "broadcast", { event: "after", args: [], rooms: ["vroom"] }), true);
      await rec.next("after");
      assert.equal(rec.count("vol"), 1);
      if (tr === WS) {
        // A burst of small volatile packets to an idle websocket all go through, in order.
        for (let i = 0; i < 50; i++) sender.emit("broadcast", { event: "vburst", args: [i], rooms: ["vroom"], volatile: true });
        assert.equal(await ask(sender, "broadcast", { event: "after2", args: [], rooms: ["vroom"] }), true);
        await rec.next("after2");
        assert.deepEqual(
          rec.of("vburst").map((a) => a[0]),
          Array.from({ length: 50 }, (_, i) => i),
        );
      }
    });

    test("emitJson: pre-encoded arguments reach the whole namespace", async () => {
      const { s: a, rec: ra } = await clients.connectRec("/", O());
      const { rec: rb } = await clients.connectRec("/", O());
      const { s: other, rec: ro } = await clients.connectRec("/dyn-json", O());
      const cases = [
        ['[1,{"a":2}]', [1, { a: 2 }]],
        ['["x",null,[true,false],{"n":{"m":[]}}]', ["x", null, [true, false], { n: { m: [] } }]],
        ["[]", []],
        [" [ 1 , 2 ] \n", [1, 2]],
        ['["h\\u00e9llo ✓ 😀"]', ["héllo ✓ 😀"]],
      ];
      let i = 0;
      for (const [json, want] of cases) {
        const ev = `pre${i++}`;
        assert.equal(await ask(a, "emitJson", { event: ev, json }), true, json);
        assert.deepEqual(await ra.next(ev), want, json);
        assert.deepEqual(await rb.next(ev), want, json);
      }
      await ask(other, "echo", 0);
      assert.equal(ro.names().filter((n) => n.startsWith("pre")).length, 0, "other namespaces are not reached");
      // Not an array: refused.
      assert.equal(await ask(a, "emitJson", { event: "bad", json: '{"a":1}' }), false);
    });

    test("200 sockets in overlapping rooms each get a broadcast exactly once", async () => {
      const N = 200;
      const socks = [];
      const CONC = 50;
      for (let i = 0; i < N; i += CONC) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(CONC, N - i) }, async (_, k) => {
            const idx = i + k;
            const { s, rec } = await clients.connectRec("/", O());
            const rooms = [];
            if (idx % 2 === 0) rooms.push("a");
            if (idx % 3 === 0) rooms.push("b");
            if (idx % 5 === 0) rooms.push("c");
            if (idx % 7 === 0) rooms.push("x");
            await Promise.all(rooms.map((r) => ask(s, "join", r)));
            return { s, rec, idx, rooms };
          }),
        );
        socks.push(...batch);
      }
      const sender = socks[1]; // in no room
      const want = socks.filter((m) => ["a", "b", "c"].some((r) => m.rooms.includes(r)) && !m.rooms.includes("x"));
      assert.equal(await ask(sender.s, "broadcast", { event: "big", args: ["once"], rooms: ["a", "b", "c"], except: ["x"] }), true);
      assert.equal(await ask(sender.s, "broadcast", { event: "big-done", args: [] }), true);
      await Promise.all(socks.map((m) => m.rec.next("big-done", 15000)));
      for (const m of socks) {
        const expected = want.includes(m) ? 1 : 0;
        assert.equal(m.rec.count("big"), expected, `socket #${m.idx} in [${m.rooms}]`);
      }
      // Whole namespace, everyone once.
      assert.equal(await ask(sender.s, "broadcast", { event: "big2", args: [] }), true);
      await Promise.all(socks.map((m) => m.rec.next("big2", 15000)));
      assert.equal(await ask(sender.s, "broadcast", { event: "big2-done", args: [] }), true);
      await Promise.all(socks.map((m) => m.rec.next("big2-done", 15000)));
      for (const m of socks) assert.equal(m.rec.count("big2"), 1);
      const st = await stats(srv);
      assert.equal(st.sockets, N);
    });
  });
}

describe("volatile to a polling connection with no GET held", () => {
  let srv;
  let clients;
  let raw;
  before(async () => {
    srv = await startSio();
    clients = new Clients(srv);
  });
  after(async () => {
    clients?.closeAll();
    if (raw?.sid) await raw.post("1").catch(() => {});
    await srv?.stop();
  });

  test("is dropped, while a non-volatile packet is queued for the next GET", async () => {
    raw = new RawPolling(srv);
    await raw.open();
    await raw.post("40");
    // CONNECT reply and welcome, then no GET is outstanding.
    const first = await raw.get();
    assert.match(first[0], /^40\{"sid":"[^"]+"\}$/);
    const welcome = first.slice(1).map(parseEvent).find((e) => e && e[0] === "welcome") ?? parseEvent((await raw.get())[0]);
    assert.equal(welcome[0], "welcome");
    const sender = await clients.connect("/", WS.opts);
    assert.equal(await ask(sender, "broadcast", { event: "vol", args: [1], volatile: true }), true);
    assert.equal(await ask(sender, "broadcast", { event: "kept", args: [2] }), true);
    // With workers the sender's worker acks once it handed the broadcasts to the
    // supervisor; the raw client's worker gets them a moment later. A GET sent before
    // that would be held and take the volatile packet: give the pipe time first.
    if (WORKERS > 1) await sleep(300);
    const packets = (await raw.get()).filter((p) => p !== "2");
    const events = packets.map(parseEvent);
    assert.deepEqual(events, [["kept", 2]], `got ${JSON.stringify(packets)}`);
    await raw.post("1");
    raw.sid = undefined;
    await waitStats(srv, (s) => s.clients === 1, "the raw client gone");
  });
});

// sio_test_server's on_sockets_op calls sio_socket_connected(s) after
// sio_nsp_disconnect_sockets() may have disconnected and freed s itself (sio.h: a socket
// pointer is valid until its disconnect callback returns unless referenced): a
// heap-use-after-free under ASan, undefined behaviour otherwise. Each transport gets its own
// server so that the crash cannot spill into other tests.
for (const tr of TRANSPORTS) {
  describe(`disconnectSockets including the requester, over ${tr.name}`, () => {
    let srv;
    let clients;
    let stopped = false;
    after(async () => {
      clients?.closeAll();
      if (srv && !stopped) await srv.stop().catch(() => {});
    });

    test("every target is disconnected and the requester gets no ack", async () => {
      srv = await startSio();
      clients = new Clients(srv);
      const a = await clients.connect("/", tr.opts);
      const b = await clients.connect("/", tr.opts);
      const all = [once(a, "disconnect"), once(b, "disconnect")];
      let acked = false;
      a.emit("disconnectSockets", {}, () => {
        acked = true;
      });
      for (const [r] of await Promise.all(all)) assert.equal(r, "io server disconnect");
      const st = await waitStats(srv, (x) => x.sockets === 0, "no sockets");
      assert.deepEqual(
        st.disconnects.map((d) => d.reason),
        ["server namespace disconnect", "server namespace disconnect"],
      );
      assert.equal(acked, false);
      clients.closeAll();
      await waitIdle(srv);
      stopped = true;
      await srv.stop(); // fails on the sanitizer report
    });
  });
}
