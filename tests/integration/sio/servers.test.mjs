// What one server asks of the others (socket.io's serverSideEmit, fetchSockets' RemoteSocket,
// broadcasts with acknowledgements): with PARLEY_TEST_WORKERS=3 each client lands on any of
// three worker processes, and every assertion counts them by the pid whoami reports.
// Alone, the same assertions hold with one server: no other to hear a serverSideEmit.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { ALL_TRANSPORTS, WORKERS, ask, optsFor, sioServerHooks, waitUntil } from "./util.mjs";

for (const tr of ALL_TRANSPORTS) {
  describe(`across servers over ${tr.name}`, () => {
    let clients;
    const O = optsFor(tr);
    sioServerHooks((s, c) => ([, clients] = [s, c]));

    // At least n sockets and, with workers, until every worker has some (connections land
    // by the kernel's hash: 12 alone miss a worker of 3 about 2% of the time); 60 at most.
    async function spread(n) {
      const all = [];
      const covered = () => new Set(all.map((x) => x.pid)).size >= WORKERS;
      while (all.length < n || (!covered() && all.length < 60)) {
        const { s, rec } = await clients.connectRec("/", O());
        all.push({ s, rec, pid: (await ask(s, "whoami")).pid });
      }
      return all;
    }

    const pids = (all) => new Set(all.map((x) => x.pid));

    test("serverSideEmit with acks: one answer from every other server, none from itself", async () => {
      const all = await spread(12);
      const from = all[0];
      assert.equal(await ask(from.s, "serverEmit", { event: "hello", args: [1, { a: "b" }], ack: true, timeout: 5000 }), true);
      const [result] = await from.rec.next("server-emit-result");
      assert.equal(result.err, 0);
      assert.equal(result.responses.length, WORKERS - 1);
      const answered = new Set(result.responses.map((r) => r.pid));
      assert.equal(answered.size, WORKERS - 1, "each other server once");
      assert.ok(!answered.has(from.pid), "not the emitter's own server");
      for (const r of result.responses) assert.deepEqual(r, { pid: r.pid, event: "hello", args: [1, { a: "b" }] });
      if (WORKERS > 1) assert.equal(pids(all).size, WORKERS, "the sockets are on every worker");
    });

    test("serverSideEmit without acks reaches the handler of every other server", async () => {
      const all = await spread(12);
      const from = all[0];
      assert.equal(await ask(from.s, "serverEmit", { event: "note", args: ["x"] }), true);
      // The handlers emit "server-event" to their own server's sockets: every socket not on
      // the emitter's server gets it once; the emitter's own never (proven by a marker that
      // went out after it, on the same server's pipe, with the acks' round trip).
      const others = all.filter((x) => x.pid !== from.pid);
      await Promise.all(others.map((x) => x.rec.waitCount("server-event", 1)));
      for (const x of others) assert.deepEqual(x.rec.of("server-event"), [[{ event: "note", args: ["x"] }]]);
      assert.equal(await ask(from.s, "serverEmit", { event: "barrier", args: [], ack: true, timeout: 5000 }), true);
      await from.rec.next("server-emit-result");
      for (const x of all.filter((y) => y.pid === from.pid)) assert.equal(x.rec.count("server-event"), 0);
    });

    test("fetchSockets returns every server's sockets, described", async () => {
      const all = await spread(9);
      assert.equal(await ask(all[1].s, "join", "fetched"), true);
      assert.equal(await ask(all[5].s, "join", "fetched"), true);
      const ids = await ask(all[0].s, "fetchSockets", {});
      assert.deepEqual([...ids].sort(), all.map((x) => x.s.id).sort());
      assert.deepEqual([...(await ask(all[0].s, "fetchSockets", { rooms: ["fetched"] }))].sort(), [all[1].s.id, all[5].s.id].sort());
    });

    test("a broadcast with acknowledgements collects the answers of every server's sockets", async () => {
      const all = await spread(9);
      for (const x of all) x.s.on("ask", (n, cb) => cb({ n, id: x.s.id }));
      await Promise.all(all.map((x) => ask(x.s, "join", "acked")));
      assert.equal(await ask(all[0].s, "roomAck", { rooms: ["acked"], event: "ask", args: [7], timeout: 5000 }), true);
      const [result] = await all[0].rec.next("room-ack-result");
      assert.equal(result.err, 0);
      assert.deepEqual(result.responses.map((r) => r[0].id).sort(), all.map((x) => x.s.id).sort());
      for (const r of result.responses) assert.equal(r[0].n, 7);
    });

    test("a recipient on another server that leaves before answering settles its share", async () => {
      const all = await spread(6);
      const asker = all[0];
      const silent = all.find((x) => x.pid !== asker.pid) || all[1];
      for (const x of all) if (x !== silent) x.s.on("ask", (cb) => cb("ok"));
      silent.s.on("ask", () => setTimeout(() => clients.closeOne(silent.s), 20));
      await Promise.all(all.map((x) => ask(x.s, "join", "settle")));
      assert.equal(await ask(asker.s, "roomAck", { rooms: ["settle"], event: "ask", args: [], timeout: 0 }), true);
      const [result] = await asker.rec.next("room-ack-result", 10000);
      assert.equal(result.err, -32, "EPIPE: one recipient left");
      assert.equal(result.responses.length, all.length - 1);
      await waitUntil(() => !silent.s.connected, { what: "the silent one gone" });
    });
  });
}

