// Disconnect reasons, on both sides. Server-side reasons come from GET /stats `disconnects`
// (recorded by sio_test_server's disconnect handler); client-side ones from the socket's
// "disconnect" event.
//
// Ways used to drop a transport abruptly:
// - client side, websocket: terminate the underlying `ws` (no close frame: TCP FIN);
// - client side, polling: destroy the TCP connections of the client's HTTP requests (its
//   pending long-poll GET among them);
// - server side: the client stops answering pings (its engine's pong is swallowed), so the
//   server ends the session with "ping timeout" and closes the transport. The official client
//   then reconnects on its own — unlike after "io server disconnect", after which socket.io
//   never reconnects automatically.
import http from "node:http";
import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  Clients,
  RawPolling,
  RawWs,
  TRANSPORTS,
  WS,
  ask,
  connected,
  dropTransport,
  droppable,
  once,
  optsFor,
  serverReasons,
  sleep,
  startSio,
  stats,
  waitIdle,
} from "./util.mjs";

const PING_INTERVAL = 300;
const PING_TIMEOUT = 300;
const CONNECT_TIMEOUT = 600;
const ARGS = [
  "--ping-interval",
  String(PING_INTERVAL),
  "--ping-timeout",
  String(PING_TIMEOUT),
  "--connect-timeout",
  String(CONNECT_TIMEOUT),
];

// Makes the client's current engine stop answering pings.
function stopPonging(s) {
  const engine = s.io.engine;
  const orig = engine._sendPacket.bind(engine);
  engine._sendPacket = (type, ...rest) => (type === "pong" ? undefined : orig(type, ...rest));
}

for (const tr of TRANSPORTS) {
  describe(`disconnect reasons over ${tr.name}`, () => {
    let srv;
    let clients;
    const O = optsFor(tr);
    const raws = [];

    before(async () => {
      srv = await startSio(ARGS);
      clients = new Clients(srv);
    });
    afterEach(async () => {
      clients.closeAll();
      for (const r of raws.splice(0)) if (r.terminate) r.terminate();
      await waitIdle(srv);
    });
    after(async () => {
      clients?.closeAll();
      await srv?.stop();
    });

    test("client socket.disconnect(): 'io client disconnect' / 'client namespace disconnect'", async () => {
      const { s } = await clients.connectRec("/", O());
      const id = s.id;
      const d = once(s, "disconnect");
      s.disconnect();
      assert.deepEqual((await d)[0], "io client disconnect");
      assert.deepEqual(await serverReasons(srv, id), ["client namespace disconnect"]);
      // One namespace of a multiplexed connection.
      const root = await clients.connect("/", O());
      const admin = clients.openOn(root, "/admin", { auth: { token: "secret" } });
      await connected(admin);
      const adminId = admin.id;
      admin.disconnect();
      assert.deepEqual(await serverReasons(srv, adminId), ["client namespace disconnect"]);
      assert.equal(await ask(root, "echo", 1), 1);
      const st = await stats(srv);
      assert.equal(st.sockets, 1);
      assert.equal(st.clients, 1);
    });

    test("disconnectMe {close:false}: 'io server disconnect' / 'server namespace disconnect', no reconnection", async () => {
      const { s } = await clients.connectRec("/", O());
      const id = s.id;
      const d = once(s, "disconnect");
      s.emit("disconnectMe", { close: false });
      assert.equal((await d)[0], "io server disconnect");
      assert.deepEqual(await serverReasons(srv, id), ["server namespace disconnect"]);
      assert.equal(s.active, false, "socket.io does not reconnect after io server disconnect");
      await waitIdle(srv);
      // Multiplexed: only that namespace goes; the connection and the other namespace stay.
      const root = await clients.connect("/", O());
      const admin = clients.openOn(root, "/admin", { auth: { token: "secret" } });
      await connected(admin);
      const adminId = admin.id;
      const d2 = once(admin, "disconnect");
      admin.emit("disconnectMe", { close: false });
      assert.equal((await d2)[0], "io server disconnect");
      assert.deepEqual(await serverReasons(srv, adminId), ["server namespace disconnect"]);
      assert.equal(await ask(root, "echo", 2), 2);
      assert.equal(root.connected, true);
    });

    test("disconnectMe {close:true}: 'io server disconnect' / 'server namespace disconnect' for every namespace of the connection", async () => {
      const root = await clients.connect("/", O());
      const admin = clients.openOn(root, "/admin", { auth: { token: "secret" } });
      await connected(admin);
      const ids = [root.id, admin.id];
      const d = [once(root, "disconnect"), once(admin, "disconnect")];
      admin.emit("disconnectMe", { close: true });
      const reasons = (await Promise.all(d)).map((x) => x[0]);
      assert.deepEqual(await serverReasons(srv, ids[0]), ["server namespace disconnect"]);
      assert.deepEqual(await serverReasons(srv, ids[1]), ["server namespace disconnect"]);
      await waitIdle(srv);
      assert.deepEqual(reasons, ["io server disconnect", "io server disconnect"]);
    });

    test("client closes the whole connection: 'transport close' on the server", async () => {
      // Manager close (what socket.io's io.disconnect()/Manager teardown does).
      const { s } = await clients.connectRec("/", O());
      const id = s.id;
      const d = once(s, "disconnect");
      s.io._close();
      assert.equal((await d)[0], "forced close");
      assert.deepEqual(await serverReasons(srv, id), ["transport close"]);
      // Engine close alone: same on the server; the Manager then reconnects on its own.
      const { s: t, rec } = await clients.connectRec("/", O());
      const tid = t.id;
      const d2 = once(t, "disconnect");
      t.io.engine.close();
      assert.equal((await d2)[0], "forced close");
      assert.deepEqual(await serverReasons(srv, tid), ["transport close"]);
      await rec.next("welcome"); // reconnected
      assert.notEqual(t.id, tid);
    });

    test("abrupt client-side drop of the transport; automatic reconnection", async () => {
      const { s, rec } = await clients.connectRec("/", droppable(O()));
      if (tr !== WS) await sleep(100); // let the long-poll GET reach the server
      const id = s.id;
      const d = once(s, "disconnect");
      const reconnected = once(s.io, "reconnect", 5000);
      dropTransport(s, { downMs: 300 });
      const [reason] = await d;
      assert.equal(reason, tr === WS ? "transport close" : "transport error");
      await reconnected;
      const [welcome] = await rec.next("welcome");
      assert.equal(welcome.recovered, false);
      assert.notEqual(s.id, id);
      assert.equal(await ask(s, "echo", "back"), "back");
      // (The client could not send a close packet: new connections were refused meanwhile.)
      assert.deepEqual(await serverReasons(srv, id), [tr === WS ? "transport close" : "transport error"]);
    });

    if (tr !== WS) {
      test(
        "a long-poll GET dropped by the client ends the session at once ('transport error')",
        async () => {
          // Network "down" longer than the server's ping interval + timeout: a server that
          // noticed the dropped GET reports "transport error"; one that did not only finds out
          // when its heartbeat fails ("ping timeout").
          const { s } = await clients.connectRec("/", droppable(O({ reconnection: false })));
          await sleep(100);
          const id = s.id;
          const d = once(s, "disconnect");
          dropTransport(s, { downMs: 2000 });
          assert.equal((await d)[0], "transport error");
          assert.deepEqual(await serverReasons(srv, id, { timeoutMs: 3000 }), ["transport error"]);
        },
      );

      test("raw: a held GET whose connection the client closes ends the session", async () => {
        const raw = new RawPolling(srv);
        await raw.open();
        await raw.post("40");
        const sid = JSON.parse((await raw.get())[0].slice(2)).sid;
        const req = http.request(raw.url(), { agent: false });
        req.on("error", () => {});
        req.end();
        await sleep(100); // held by now
        req.destroy();
        // Well inside the ping interval, so only noticing the close can end it.
        assert.deepEqual(await serverReasons(srv, sid, { timeoutMs: PING_INTERVAL / 2 }), ["transport error"]);
      });
    }

    test("heartbeat: a client answering pings stays connected past several intervals", async () => {
      const { s } = await clients.connectRec("/", O());
      let disconnected = false;
      s.on("disconnect", () => {
        disconnected = true;
      });
      const id = s.id;
      await sleep(3 * (PING_INTERVAL + PING_TIMEOUT));
      assert.equal(disconnected, false);
      assert.equal(s.id, id);
      assert.equal(await ask(s, "echo", 1), 1);
    });

    test("server-side ping timeout (official client stops ponging): both sides see it; the client reconnects", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      const id = s.id;
      const d = once(s, "disconnect", 5000);
      const reconnected = once(s.io, "reconnect", 5000);
      stopPonging(s);
      const [reason] = await d;
      assert.deepEqual(await serverReasons(srv, id), ["ping timeout"]);
      // The server closes the transport once the timeout expires: the client sees that close.
      assert.equal(reason, "transport close");
      await reconnected;
      await rec.next("welcome");
      assert.notEqual(s.id, id);
      assert.equal(await ask(s, "echo", 1), 1);
    });

    test("ping timeout of a raw client that never answers", async () => {
      const t0 = Date.now();
      let sid;
      if (tr === WS) {
        const raw = new RawWs(srv);
        raws.push(raw);
        await raw.open();
        raw.send("40");
        const m = await raw.nextNonPing();
        sid = JSON.parse(m.slice(2)).sid;
        await raw.waitClosed(5000);
      } else {
        const raw = new RawPolling(srv);
        await raw.open();
        await raw.post("40");
        const [m] = await raw.get();
        sid = JSON.parse(m.slice(2)).sid;
      }
      assert.deepEqual(await serverReasons(srv, sid), ["ping timeout"]);
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= PING_INTERVAL + PING_TIMEOUT - 100, `after ${elapsed} ms`);
    });

    test("parse error: garbage after connecting", async () => {
      for (const garbage of ["4abc", '42{"not":"an array"}', "42[]", '42["connect"]', "49", "42[1,"]) {
        let sid;
        if (tr === WS) {
          const raw = new RawWs(srv, { autoPong: true });
          raws.push(raw);
          await raw.open();
          raw.send("40");
          sid = JSON.parse((await raw.next()).slice(2)).sid;
          raw.send(garbage);
          await raw.waitClosed();
        } else {
          const raw = new RawPolling(srv);
          await raw.open();
          await raw.post("40");
          sid = JSON.parse((await raw.get())[0].slice(2)).sid;
          await raw.post(garbage);
          // The session is gone: a GET answers 400 or a close packet.
          const r = await raw.get().catch((e) => e);
          assert.ok(r instanceof Error || r.includes("1"), `GET after the error: ${r}`);
        }
        assert.deepEqual(await serverReasons(srv, sid), ["parse error"], JSON.stringify(garbage));
      }
    });

    test("parse error: an official client sending 11 attachments (the limit is 10)", async () => {
      const { s } = await clients.connectRec("/", O({ reconnection: false }));
      const id = s.id;
      const d = once(s, "disconnect");
      s.emit("echo", ...Array.from({ length: 11 }, (_, i) => Buffer.from([i])));
      const [reason] = await d;
      assert.deepEqual(await serverReasons(srv, id), ["parse error"]);
      // Over polling the client may still be posting the rest of the packet when the close
      // comes (the eleven attachments need not travel in one POST): that POST then finds
      // the session gone, and whichever the client hears first names the reason.
      const reasons = tr === WS ? ["transport close"] : ["transport close", "transport error"];
      assert.ok(reasons.includes(reason), reason);
    });

    test("connect timeout: a connection that joins no namespace is closed", async () => {
      const before = (await stats(srv)).disconnects.length;
      const t0 = Date.now();
      if (tr === WS) {
        const raw = new RawWs(srv, { autoPong: true });
        raws.push(raw);
        await raw.open();
        await raw.waitClosed(CONNECT_TIMEOUT + 3000);
      } else {
        const raw = new RawPolling(srv);
        await raw.open();
        // Held until the server gives up on the session (pings may come first: answer them).
        for (;;) {
          const packets = await raw.get(CONNECT_TIMEOUT + 3000);
          if (packets.includes("1")) break;
          if (packets.includes("2")) await raw.post("3");
        }
      }
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= CONNECT_TIMEOUT - 100, `closed after ${elapsed} ms`);
      await waitIdle(srv);
      assert.equal((await stats(srv)).disconnects.length, before, "no socket, no disconnect reason");
    });
  });

  describe(`server shutdown over ${tr.name}`, () => {
    test("clients see 'transport close'", async () => {
      const srv = await startSio();
      const clients = new Clients(srv);
      try {
        const { s } = await clients.connectRec("/", { ...tr.opts, reconnection: false });
        const root2 = await clients.connect("/", { ...tr.opts, reconnection: false });
        const admin = clients.openOn(root2, "/admin", { auth: { token: "secret" } });
        await connected(admin);
        const d = [s, root2, admin].map((x) => once(x, "disconnect"));
        // Over polling the close packet travels in a held GET: let every client get its GET to
        // the server first (a client whose GET is in flight at that instant finds the server
        // gone and reports "transport error" instead).
        if (tr !== WS) await sleep(200);
        await srv.stop();
        const reasons = (await Promise.all(d)).map((x) => x[0]);
        assert.deepEqual(reasons, ["transport close", "transport close", "transport close"]);
      } finally {
        clients.closeAll();
        await srv.stop();
      }
    });
  });
}
