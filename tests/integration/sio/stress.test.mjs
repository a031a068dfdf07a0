// Bounded load: 500 clients (half polling, half websocket) connecting at once, joining rooms
// and receiving broadcasts, then leaving; and connect/leave churn. The server must end with no
// client and no socket left.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  POLLING,
  RawPolling,
  RawWs,
  WS,
  ask,
  connected,
  Recorder,
  serverReasons,
  sioServerHooks,
  stats,
  waitIdle,
} from "./util.mjs";

const N = 500;
const GROUPS = 10;

describe("stress", () => {
  let srv, clients;
  sioServerHooks((s, c) => ([srv, clients] = [s, c]), [], { idle: false });

  test(`${N} concurrent clients (polling and websocket) join rooms, receive broadcasts, leave`, { timeout: 50000 }, async () => {
    const members = Array.from({ length: N }, (_, i) => {
      const tr = i % 2 ? WS : POLLING;
      const s = clients.open("/", { ...tr.opts, timeout: 20000 });
      return { i, tr, s, rec: new Recorder(s), group: `g${i % GROUPS}` };
    });
    // All at once.
    await Promise.all(members.map((m) => connected(m.s, 30000)));
    await Promise.all(members.map((m) => m.rec.next("welcome", 30000)));
    let st = await stats(srv);
    assert.equal(st.clients, N);
    assert.equal(st.sockets, N);
    assert.equal(new Set(members.map((m) => m.s.id)).size, N, "distinct ids");

    await Promise.all(
      members.map(async (m) => {
        assert.equal(await ask(m.s, "join", m.group), true);
        assert.equal(await ask(m.s, "join", `t-${m.tr.name}`), true);
      }),
    );

    const sender = members[0];
    const send = (opts) => ask(sender.s, "broadcast", opts);
    for (let g = 0; g < GROUPS; g++) assert.equal(await send({ event: "group", args: [`g${g}`], rooms: [`g${g}`] }), true);
    assert.equal(await send({ event: "all", args: [1] }), true);
    assert.equal(await send({ event: "ws-only", args: [], rooms: ["t-websocket"] }), true);
    assert.equal(await send({ event: "many", args: [], rooms: ["g1", "g2", "t-polling"], except: ["g3"] }), true);
    assert.equal(await send({ event: "done", args: [] }), true);

    await Promise.all(members.map((m) => m.rec.next("done", 30000)));
    for (const m of members) {
      assert.deepEqual(m.rec.of("group"), [[m.group]], `#${m.i}`);
      assert.deepEqual(m.rec.of("all"), [[1]], `#${m.i}`);
      assert.equal(m.rec.count("ws-only"), m.tr === WS ? 1 : 0, `#${m.i}`);
      const many = (m.group === "g1" || m.group === "g2" || m.tr === POLLING) && m.group !== "g3";
      assert.equal(m.rec.count("many"), many ? 1 : 0, `#${m.i} ${m.group} ${m.tr.name}`);
    }
    const fetched = await ask(sender.s, "fetchSockets", { rooms: ["g4"] });
    assert.equal(fetched.length, N / GROUPS);

    // Leave in different ways: namespace disconnect, Manager close, abrupt websocket drop.
    members.forEach((m, k) => {
      if (k % 3 === 0) m.s.disconnect();
      else if (k % 3 === 1 || m.tr !== WS) m.s.io._close();
      else m.s.io.engine.transport.ws.terminate();
    });
    clients.closeAll();
    st = await waitIdle(srv, 20000);
    assert.equal(st.clients, 0);
    assert.equal(st.sockets, 0);
  });
});

// Abandoned polling sessions (the client left between the handshake and its first GET, with no
// close packet) are reaped by the heartbeat, as in the reference server: a short one here.
describe("stress: churn", () => {
  let srv, clients;
  sioServerHooks((s, c) => ([srv, clients] = [s, c]), ["--ping-interval", "500", "--ping-timeout", "500"], { idle: false });

  test("churn: clients leaving while connecting, or right after", { timeout: 40000 }, async () => {
    const socks = [];
    const closing = [];
    for (let i = 0; i < 300; i++) {
      const tr = i % 2 ? WS : POLLING;
      const nsp = i % 5 === 0 ? "/slow" : i % 5 === 1 ? "/admin" : "/";
      const s = clients.open(nsp, { ...tr.opts, reconnection: false, auth: { token: "secret" } });
      socks.push(s);
      const delay = i % 4 === 0 ? 0 : (i * 7) % 60;
      closing.push(
        new Promise((resolve) =>
          setTimeout(() => {
            clients.closeOne(s);
            resolve();
          }, delay),
        ),
      );
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(closing);
    clients.closeAll();
    await waitIdle(srv, 20000);
    // And the server still serves.
    const s = await clients.connect("/", WS.opts);
    assert.equal(await ask(s, "echo", "alive"), "alive");
    clients.closeAll();
    await waitIdle(srv);
  });
});

// sio.h: past 16 x backpressure_bytes (default 256 KiB) waiting on a connection, the client is
// closed as a slow consumer ("transport error"), so a client that does not read cannot make
// the server hold unbounded memory.
describe("stress: slow consumers", () => {
  let srv, clients;
  sioServerHooks((s, c) => ([srv, clients] = [s, c]), [], { idle: false });

  for (const tr of [WS, POLLING]) {
    test(`a ${tr.name} client that stops reading is closed; the others carry on`, { timeout: 30000 }, async () => {
      let sid;
      let raw;
      if (tr === WS) {
        raw = new RawWs(srv);
        await raw.open();
        raw.send("40");
        sid = JSON.parse((await raw.next()).slice(2)).sid;
        raw.ws._socket.pause(); // stop reading: the kernel buffers fill, then the server's queue
      } else {
        raw = new RawPolling(srv);
        await raw.open();
        await raw.post("40");
        sid = JSON.parse((await raw.get())[0].slice(2)).sid; // and no GET after that
      }
      const { s: sender, rec } = await clients.connectRec("/", WS.opts);
      const big = Buffer.alloc(500 * 1024, 0xab);
      let closedAfter = -1;
      // 80 x 500 KiB = 40 MiB at most: well past kernel buffers + 4 MiB.
      for (let i = 0; i < 80 && closedAfter < 0; i++) {
        assert.equal(await ask(sender, "broadcast", { event: "big", args: [i, big] }), true);
        if ((await stats(srv)).disconnects.some((d) => d.id === sid)) closedAfter = i + 1;
      }
      assert.ok(closedAfter > 0, "the slow client was closed");
      assert.deepEqual(await serverReasons(srv, sid), ["transport error"]);
      // The sender, which reads, got every one of them.
      await rec.waitCount("big", closedAfter, 20000);
      assert.deepEqual(
        rec.of("big").map((a) => a[0]),
        Array.from({ length: closedAfter }, (_, i) => i),
      );
      assert.equal(await ask(sender, "echo", "fine"), "fine");
      if (raw.terminate) raw.terminate();
      clients.closeAll();
      await waitIdle(srv);
    });
  }
});
