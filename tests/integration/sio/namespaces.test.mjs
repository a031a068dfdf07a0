// Namespaces: multiplexing over one Manager, middleware (sync accept/reject, async), dynamic
// namespaces, unknown namespaces, and the handshake data a socket sees (whoami).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  ALL_TRANSPORTS,
  Recorder,
  ask,
  connectError,
  connected,
  once,
  serverReasons,
  sleep,
  stats,
  waitIdle,
  waitStats,
  optsFor,
  sioServerHooks,
} from "./util.mjs";

for (const tr of ALL_TRANSPORTS) {
  describe(`namespaces over ${tr.name}`, () => {
    let srv, clients;
    const O = optsFor(tr);
    sioServerHooks((s, c) => ([srv, clients] = [s, c]));

    test("/ and /admin share one connection (one Manager, one Engine.IO session)", async () => {
      const root = clients.open("/", O());
      const rootRec = new Recorder(root);
      await connected(root);
      const admin = clients.openOn(root, "/admin", { auth: { token: "secret" } });
      const adminRec = new Recorder(admin);
      await connected(admin);
      assert.equal(root.io, admin.io, "same Manager");
      await rootRec.next("welcome");
      const [welcome] = await adminRec.next("welcome");
      assert.deepEqual(welcome, { id: admin.id, recovered: false });

      // One Engine.IO client, two sockets.
      await waitStats(srv, (s) => s.clients === 1 && s.sockets === 2, "1 client with 2 sockets");

      const [a, b] = await Promise.all([ask(root, "whoami"), ask(admin, "whoami")]);
      assert.equal(a.nsp, "/");
      assert.equal(b.nsp, "/admin");
      assert.equal(a.id, root.id);
      assert.equal(b.id, admin.id);
      assert.notEqual(a.id, b.id);
      // Same Engine.IO session: same handshake request and open time.
      assert.equal(a.time, b.time);
      assert.equal(a.url, b.url);
      assert.deepEqual(a.auth, {});
      assert.deepEqual(b.auth, { token: "secret" });

      // Packets are routed to their own namespace.
      root.emit("echo", "to-root");
      admin.emit("echo", "to-admin");
      assert.deepEqual(await rootRec.next("echo"), ["to-root"]);
      assert.deepEqual(await adminRec.next("echo"), ["to-admin"]);
      // A namespace-wide broadcast in /admin does not reach "/" (the root socket's echo
      // round trip afterwards proves nothing was queued before it).
      assert.equal(await ask(admin, "broadcast", { event: "adm-only", args: [1] }), true);
      assert.deepEqual(await adminRec.next("adm-only"), [1]);
      assert.deepEqual(await ask(root, "echo", "sync"), "sync");
      assert.equal(rootRec.count("adm-only"), 0);

      // Leaving one namespace keeps the other (and the connection) alive.
      const adminId = admin.id;
      admin.disconnect();
      assert.deepEqual(await serverReasons(srv, adminId, { nsp: "/admin" }), ["client namespace disconnect"]);
      assert.equal(await ask(root, "echo", 42), 42);
      const st = await waitStats(srv, (s) => s.sockets === 1, "1 socket");
      assert.equal(st.clients, 1);
    });

    test("/admin middleware accepts token 'secret'", async () => {
      const { s } = await clients.connectRec("/admin", O({ auth: { token: "secret", extra: [1, 2] } }));
      const me = await ask(s, "whoami");
      assert.equal(me.nsp, "/admin");
      assert.deepEqual(me.auth, { token: "secret", extra: [1, 2] });
      assert.deepEqual(await ask(s, "echo", "ok"), "ok");
    });

    test("/admin middleware rejects with message and data", async () => {
      const adminDisconnects = (st) => st.disconnects.filter((d) => d.nsp === "/admin").length;
      const before = adminDisconnects(await stats(srv));
      for (const auth of [undefined, { token: "wrong" }, { token: 7 }]) {
        const s = clients.open("/admin", O(auth ? { auth } : {}));
        const err = await connectError(s);
        assert.equal(err.message, "not authorized", `auth ${JSON.stringify(auth)}`);
        assert.deepEqual(err.data, { code: "E_AUTH" });
        assert.equal(s.connected, false);
      }
      // Nothing connected, nothing recorded as a disconnect.
      const st = await stats(srv);
      assert.equal(st.sockets, 0);
      assert.equal(adminDisconnects(st), before);
    });

    test("a refused namespace leaves the multiplexed one working; retrying with auth succeeds", async () => {
      const root = await clients.connect("/", O());
      const admin = clients.openOn(root, "/admin", { auth: { token: "nope" } });
      const err = await connectError(admin);
      assert.equal(err.message, "not authorized");
      assert.equal(root.connected, true);
      assert.equal(await ask(root, "echo", "still here"), "still here");
      // Same socket, corrected credentials, same Manager/connection.
      admin.auth = { token: "secret" };
      admin.connect();
      await connected(admin);
      const me = await ask(admin, "whoami");
      assert.equal(me.nsp, "/admin");
      const st = await waitStats(srv, (s) => s.sockets === 2, "2 sockets");
      assert.equal(st.clients, 1);
    });

    test("/slow: asynchronous middleware delays the connection", async () => {
      const t0 = Date.now();
      const { s } = await clients.connectRec("/slow", O());
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 45, `connected after ${elapsed} ms, the middleware waits 50 ms`);
      const me = await ask(s, "whoami");
      assert.equal(me.nsp, "/slow");
      // Several at once all get through, each on its own connection.
      const many = await Promise.all([0, 1, 2, 3, 4].map(() => clients.connect("/slow", O())));
      const ids = new Set(many.map((x) => x.id));
      assert.equal(ids.size, 5);
      await waitStats(srv, (st) => st.sockets === 6, "6 sockets");
    });

    test("/slow: the client leaving while the middleware runs is cleaned up", async () => {
      const slowDisconnects = (st) => st.disconnects.filter((d) => d.nsp === "/slow").length;
      const before = slowDisconnects(await stats(srv));
      const s = clients.open("/slow", O());
      // The CONNECT goes out when the Manager opens; close right after it.
      await once(s.io, "open");
      await sleep(0);
      s.io._close();
      // Past the middleware's 50 ms: its sio_next must find the socket gone.
      await sleep(120);
      await waitIdle(srv);
      const st = await stats(srv);
      assert.equal(slowDisconnects(st), before, "a socket that never connected has no disconnect");
      // The namespace still works.
      const ok = await clients.connect("/slow", O());
      assert.equal((await ask(ok, "whoami")).nsp, "/slow");
    });

    test("dynamic namespaces /dyn-*: created on first connect, shared afterwards", async () => {
      const { s: a, rec: ra } = await clients.connectRec("/dyn-x", O());
      assert.equal((await ask(a, "whoami")).nsp, "/dyn-x");
      const { s: b, rec: rb } = await clients.connectRec("/dyn-x", O());
      const { s: other, rec: ro } = await clients.connectRec("/dyn-y", O());
      const { s: root, rec: rr } = await clients.connectRec("/", O());
      assert.equal((await ask(other, "whoami")).nsp, "/dyn-y");
      // A broadcast in /dyn-x reaches both of its sockets and nobody else.
      assert.equal(await ask(b, "broadcast", { event: "dyn", args: ["hi"] }), true);
      assert.deepEqual(await ra.next("dyn"), ["hi"]);
      assert.deepEqual(await rb.next("dyn"), ["hi"]);
      await ask(other, "echo", 0);
      await ask(root, "echo", 0);
      assert.equal(ro.count("dyn"), 0);
      assert.equal(rr.count("dyn"), 0);
      // The bare prefix matches too.
      const bare = await clients.connect("/dyn-", O());
      assert.equal((await ask(bare, "whoami")).nsp, "/dyn-");
    });

    test("unknown namespaces get connect_error 'Invalid namespace'", async () => {
      for (const nsp of ["/nope", "/dynx", "/admin2", "/dyn"]) {
        const s = clients.open(nsp, O());
        const err = await connectError(s);
        assert.equal(err.message, "Invalid namespace", nsp);
        assert.equal(s.connected, false);
      }
      // Multiplexed: the other namespace of the same connection is unaffected.
      const root = await clients.connect("/", O());
      const bad = clients.openOn(root, "/nope");
      assert.equal((await connectError(bad)).message, "Invalid namespace");
      assert.equal(await ask(root, "echo", "alive"), "alive");
      const st = await stats(srv);
      assert.equal(st.sockets, 1);
      assert.equal(st.clients, 1);
    });

    test("whoami: auth, query, headers, address, url, time", async () => {
      const before = Date.now();
      const { s } = await clients.connectRec(
        "/",
        O({
          auth: { token: "t0k", n: 1, nested: { a: [true, null] } },
          query: { foo: "bar", n: "42" },
          extraHeaders: { "x-parley-test": "hello", "X-Mixed-Case": "Value" },
        }),
      );
      const me = await ask(s, "whoami");
      assert.equal(me.id, s.id);
      assert.equal(me.nsp, "/");
      assert.equal(me.recovered, false);
      assert.deepEqual(me.auth, { token: "t0k", n: 1, nested: { a: [true, null] } });
      assert.equal(me.query.foo, "bar");
      assert.equal(me.query.n, "42");
      assert.equal(me.query.EIO, "4");
      const first = tr.opts.transports ? tr.opts.transports[0] : "polling";
      assert.equal(me.query.transport, first);
      assert.equal(me.headers["x-parley-test"], "hello");
      assert.equal(me.headers["x-mixed-case"], "Value", "header names are lower-cased");
      assert.equal(me.headers.host, `127.0.0.1:${srv.port}`);
      assert.equal(me.address, "127.0.0.1");
      assert.ok(me.url.startsWith("/socket.io/?"), me.url);
      assert.match(me.url, /[?&]foo=bar(&|$)/);
      assert.ok(me.time >= before - 1000 && me.time <= Date.now() + 1000, `time ${me.time}`);
    });
  });
}
