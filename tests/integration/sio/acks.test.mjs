// Acknowledgements: client→server (emitWithAck / callbacks), server→client (serverAck), their
// timeouts, binary payloads in acks both ways, and broadcast acks to rooms (roomAck).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  ALL_TRANSPORTS,
  ask,
  normBin,
  sleep,
  waitIdle,
  waitStats,
  optsFor,
  sioServerHooks,
} from "./util.mjs";

const ETIMEDOUT = -110;
const EPIPE = -32;

for (const tr of ALL_TRANSPORTS) {
  describe(`acks over ${tr.name}`, () => {
    let srv, clients;
    const O = optsFor(tr);
    sioServerHooks((s, c) => ([srv, clients] = [s, c]));

    test("client→server: emitWithAck and callbacks with several arguments", async () => {
      const { s } = await clients.connectRec("/", O());
      assert.deepEqual(await ask(s, "echo", { a: [1, "two", null] }), { a: [1, "two", null] });
      assert.equal(await ask(s, "join", "r"), true);
      // Callback form: every ack argument arrives.
      const args = await new Promise((resolve) => s.emit("echo", 1, "b", [3], { d: 4 }, (...a) => resolve(a)));
      assert.deepEqual(args, [1, "b", [3], { d: 4 }]);
      // No arguments at all.
      const none = await new Promise((resolve) => s.emit("echo", (...a) => resolve(a)));
      assert.deepEqual(none, []);
      // Many in flight at once: each ack reaches its own callback.
      const N = 200;
      const got = await Promise.all(Array.from({ length: N }, (_, i) => ask(s, "echo", i, `x${i}`)));
      assert.deepEqual(got, Array.from({ length: N }, (_, i) => i));
      // An event without a handler is never acknowledged (client-side timeout fires).
      await assert.rejects(s.timeout(300).emitWithAck("no-such-event", 1), /operation has timed out/);
      // ...and the connection is fine afterwards.
      assert.equal(await ask(s, "echo", "after"), "after");
    });

    test("server→client: the client's answer comes back (serverAck)", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      s.on("ask", (...a) => {
        const cb = a.pop();
        cb("answer", ...a, { n: a.length });
      });
      assert.equal(await ask(s, "serverAck", { event: "ask", args: [1, "two", { three: 3 }], timeout: 2000 }), true);
      const [res] = await rec.next("server-ack-result");
      assert.deepEqual(res, { err: 0, args: ["answer", 1, "two", { three: 3 }, { n: 3 }] });
      // No timeout (0): a late answer still counts.
      s.on("ask-late", (...a) => {
        const cb = a.pop();
        setTimeout(() => cb("late"), 300);
      });
      assert.equal(await ask(s, "serverAck", { event: "ask-late", args: [], timeout: 0 }), true);
      assert.deepEqual((await rec.next("server-ack-result"))[0], { err: 0, args: ["late"] });
      // Several outstanding at once, answered in reverse order: each gets its own answer.
      const pending = [];
      s.on("ask-many", (i, cb) => {
        pending.push(() => cb(i * 10));
        if (pending.length === 5) for (const f of pending.reverse()) f();
      });
      for (let i = 0; i < 5; i++) assert.equal(await ask(s, "serverAck", { event: "ask-many", args: [i], timeout: 3000 }), true);
      const results = [];
      for (let i = 0; i < 5; i++) results.push((await rec.next("server-ack-result"))[0]);
      assert.deepEqual(
        results.map((r) => r.args[0]),
        [40, 30, 20, 10, 0],
      );
      assert.ok(results.every((r) => r.err === 0));
    });

    test("server→client: no answer → err -110 once; a late answer is ignored", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      let late;
      s.on("ask-silent", (...a) => {
        late = a.pop();
      });
      const t0 = Date.now();
      assert.equal(await ask(s, "serverAck", { event: "ask-silent", args: [1], timeout: 200 }), true);
      const [res] = await rec.next("server-ack-result");
      const elapsed = Date.now() - t0;
      assert.equal(res.err, ETIMEDOUT);
      assert.equal(res.args, null);
      assert.ok(elapsed >= 150, `timed out after ${elapsed} ms (timeout 200)`);
      // Answer now: nothing more must come. The echo round trip after it proves it.
      assert.equal(typeof late, "function");
      late("too late");
      assert.equal(await ask(s, "echo", "sync"), "sync");
      assert.equal(rec.count("server-ack-result"), 1);
    });

    test("server→client ack pending when the client leaves: the server stays sound", async () => {
      const { s } = await clients.connectRec("/", O());
      s.on("ask-never", () => {});
      // One with a timer, one without; both must be cancelled cleanly on disconnect.
      assert.equal(await ask(s, "serverAck", { event: "ask-never", args: [], timeout: 500 }), true);
      assert.equal(await ask(s, "serverAck", { event: "ask-never", args: [], timeout: 0 }), true);
      clients.closeOne(s);
      await waitIdle(srv);
      await sleep(600); // past the timer that was cancelled
      const { s: t } = await clients.connectRec("/", O());
      assert.equal(await ask(t, "echo", "ok"), "ok");
    });

    test("binary in acks, both ways", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      const b1 = Buffer.from([0, 1, 2, 255]);
      const b2 = Buffer.alloc(1000, 7);
      // client→server ack carrying buffers back
      const back = await ask(s, "echo", { bin: b1, list: [b2, "s"] });
      assert.deepEqual(normBin(back), { bin: b1, list: [b2, "s"] });
      // server→client with buffers; the client answers with buffers
      s.on("ask-bin", (arg, cb) => {
        assert.deepEqual(normBin(arg), { x: b1 });
        cb({ y: Buffer.concat([normBin(arg.x), Buffer.from([9])]) }, b2);
      });
      assert.equal(await ask(s, "serverAck", { event: "ask-bin", args: [{ x: b1 }], timeout: 2000 }), true);
      const [res] = await rec.next("server-ack-result");
      assert.equal(res.err, 0);
      assert.deepEqual(normBin(res.args), [{ y: Buffer.from([0, 1, 2, 255, 9]) }, b2]);
    });

    describe("roomAck (broadcast with acknowledgements)", () => {
      async function members(n, room, answer) {
        const out = [];
        for (let i = 0; i < n; i++) {
          const { s } = await clients.connectRec("/", O());
          assert.equal(await ask(s, "join", room), true);
          s.on("q", (...a) => answer(s, i, a));
          out.push(s);
        }
        return out;
      }

      test("all answer: err 0 and one response per socket", async () => {
        const socks = await members(4, "ra", (s, i, a) => a.pop()(s.id, i, a[0]));
        const { s: req, rec } = await clients.connectRec("/", O());
        const t0 = Date.now();
        assert.equal(await ask(req, "roomAck", { rooms: ["ra"], event: "q", args: [7], timeout: 3000 }), true);
        const [res] = await rec.next("room-ack-result");
        assert.ok(Date.now() - t0 < 2500, "finished as soon as all answered, not at the timeout");
        assert.equal(res.err, 0);
        assert.equal(res.responses.length, 4);
        assert.deepEqual(
          res.responses.map((r) => r[0]).sort(),
          socks.map((s) => s.id).sort(),
        );
        for (const r of res.responses) assert.equal(r[2], 7);
        // except: one member excluded.
        assert.equal(await ask(socks[0], "join", "rx"), true);
        assert.equal(await ask(req, "roomAck", { rooms: ["ra"], except: ["rx"], event: "q", args: [8], timeout: 3000 }), true);
        const [res2] = await rec.next("room-ack-result");
        assert.equal(res2.err, 0);
        assert.deepEqual(
          res2.responses.map((r) => r[0]).sort(),
          socks.slice(1).map((s) => s.id).sort(),
        );
      });

      test("one does not answer: err -110 with the others' responses", async () => {
        const socks = await members(3, "rb", (s, i, a) => {
          if (i !== 1) a.pop()(i);
        });
        const { s: req, rec } = await clients.connectRec("/", O());
        const t0 = Date.now();
        assert.equal(await ask(req, "roomAck", { rooms: ["rb"], event: "q", args: [], timeout: 300 }), true);
        const [res] = await rec.next("room-ack-result");
        assert.ok(Date.now() - t0 >= 250, "waited for the timeout");
        assert.equal(res.err, ETIMEDOUT);
        assert.deepEqual(
          res.responses.map((r) => r[0]).sort(),
          [0, 2],
        );
        assert.equal(await ask(req, "echo", "sync"), "sync");
        assert.equal(rec.count("room-ack-result"), 1, "one outcome only");
        assert.equal(socks.length, 3);
      });

      test("a member leaving before answering: settles at once with -EPIPE (-32) and the answers", async () => {
        // sio.h: -EPIPE as soon as every recipient answered or disconnected and at least one
        // disconnected. (socket.io itself would wait for its timeout.)
        const socks = await members(2, "rc", (s, i, a) => {
          if (i === 0) a.pop()("ok");
          else clients.closeOne(s);
        });
        const { s: req, rec } = await clients.connectRec("/", O());
        const t0 = Date.now();
        assert.equal(await ask(req, "roomAck", { rooms: ["rc"], event: "q", args: [], timeout: 5000 }), true);
        const [res] = await rec.next("room-ack-result");
        assert.ok(Date.now() - t0 < 2500, `settled after ${Date.now() - t0} ms, not at the timeout`);
        assert.equal(res.err, EPIPE);
        assert.deepEqual(res.responses, [["ok"]]);
        await waitStats(srv, (st) => st.sockets === 2, "the leaver gone");
        assert.equal(socks.length, 2);
        assert.equal(await ask(req, "echo", "sync"), "sync");
        assert.equal(rec.count("room-ack-result"), 1, "one outcome only");
      });

      test("every member leaving before answering: -EPIPE with no responses", async () => {
        await members(2, "rf", (s) => clients.closeOne(s));
        const { s: req, rec } = await clients.connectRec("/", O());
        assert.equal(await ask(req, "roomAck", { rooms: ["rf"], event: "q", args: [], timeout: 5000 }), true);
        const [res] = await rec.next("room-ack-result", 2500);
        assert.deepEqual(res, { err: EPIPE, responses: [] });
      });

      test("empty room: err 0 and no responses, at once", async () => {
        const { s: req, rec } = await clients.connectRec("/", O());
        assert.equal(await ask(req, "roomAck", { rooms: ["nobody"], event: "q", args: [], timeout: 5000 }), true);
        const [res] = await rec.next("room-ack-result", 2000);
        assert.deepEqual(res, { err: 0, responses: [] });
      });

      test("the requester in the room answers too", async () => {
        const { s: req, rec } = await clients.connectRec("/", O());
        assert.equal(await ask(req, "join", "rd"), true);
        req.on("q", (cb) => cb("me"));
        const [other] = await members(1, "rd", (s, i, a) => a.pop()("other"));
        assert.equal(await ask(req, "roomAck", { rooms: ["rd"], event: "q", args: [], timeout: 3000 }), true);
        const [res] = await rec.next("room-ack-result");
        assert.equal(res.err, 0);
        assert.deepEqual(res.responses.map((r) => r[0]).sort(), ["me", "other"]);
        assert.ok(other.connected);
      });

      test("the requester leaving before the outcome: the server stays sound", async () => {
        await members(2, "re", () => {});
        const { s: req } = await clients.connectRec("/", O());
        assert.equal(await ask(req, "roomAck", { rooms: ["re"], event: "q", args: [], timeout: 300 }), true);
        clients.closeOne(req);
        await waitStats(srv, (st) => st.sockets === 2, "requester gone");
        await sleep(400); // the collector times out with its requester gone
        const { s } = await clients.connectRec("/", O());
        assert.equal(await ask(s, "echo", 1), 1);
      });
    });
  });
}
