// Binary payloads: Buffers nested in objects and arrays both ways (echo event and ack),
// several attachments, empty and large buffers, binary in broadcasts.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  ALL_TRANSPORTS,
  Recorder,
  ask,
  connected,
  normBin,
  optsFor,
  sioServerHooks,
} from "./util.mjs";

function pattern(len, seed) {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed) & 255;
  return b;
}

for (const tr of ALL_TRANSPORTS) {
  describe(`binary over ${tr.name}`, () => {
    let srv, clients;
    const O = optsFor(tr);
    sioServerHooks((s, c) => ([srv, clients] = [s, c]));

    // Emits echo with args; checks both the echo event and the ack bring back the same args.
    async function roundTrip(s, rec, args) {
      const acked = await new Promise((resolve) => s.emit("echo", ...args, (...a) => resolve(a)));
      const [echoed] = [await rec.next("echo", 10000)];
      assert.deepEqual(normBin(acked), normBin(args), "ack");
      assert.deepEqual(normBin(echoed), normBin(args), "echo event");
      for (const a of [acked, echoed]) {
        // Binary comes back as binary, not as placeholders or base64 strings.
        const json = JSON.stringify(a, (k, v) => (v && v.type === "Buffer" ? "<bin>" : v));
        assert.ok(!json.includes("_placeholder"), json.slice(0, 200));
      }
    }

    test("buffers nested in objects and arrays", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      await roundTrip(s, rec, [Buffer.from("hello")]);
      await roundTrip(s, rec, [
        { a: Buffer.from([1, 2, 3]), nested: { arr: [pattern(10, 1), 1, "x", { deep: [[pattern(3, 2)]] }] } },
        "text",
        [pattern(5, 3), null, true],
      ]);
      // Typed arrays and ArrayBuffers are sent as binary too.
      await roundTrip(s, rec, [new Uint8Array([9, 8, 7]), pattern(4, 4).buffer.slice(0, 4)]);
      // The same buffer twice is two attachments.
      const twice = pattern(16, 5);
      await roundTrip(s, rec, [{ x: twice, y: twice }]);
    });

    test("several attachments in one packet (10, socket.io-parser's limit)", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      const bufs = Array.from({ length: 10 }, (_, i) => pattern(100 + i, i));
      await roundTrip(s, rec, bufs);
      await roundTrip(s, rec, [{ list: bufs.slice(0, 5) }, ...bufs.slice(5)]);
    });

    test("empty buffer", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      await roundTrip(s, rec, [Buffer.alloc(0)]);
      await roundTrip(s, rec, [{ e: Buffer.alloc(0), f: Buffer.from([1]) }, Buffer.alloc(0)]);
    });

    test("large (500 KB) buffer", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      const big = pattern(500 * 1024, 42);
      await roundTrip(s, rec, [{ big }]);
      // Two in a row, with text around.
      await roundTrip(s, rec, ["before", big.subarray(0, 300000), "after"]);
      assert.equal(await ask(s, "echo", "still fine"), "still fine");
    });

    test("binary in broadcasts (rooms, namespace, excludeSelf)", async () => {
      const { s: a, rec: ra } = await clients.connectRec("/", O());
      const { s: b, rec: rb } = await clients.connectRec("/", O());
      const { rec: rc } = await clients.connectRec("/", O());
      assert.equal(await ask(b, "join", "bin-room"), true);
      const payload = [{ id: 1, data: pattern(2000, 7) }, pattern(1, 8), [pattern(0, 0)]];
      assert.equal(await ask(a, "broadcast", { event: "bin", args: payload, rooms: ["bin-room"] }), true);
      assert.deepEqual(normBin(await rb.next("bin")), normBin(payload));
      assert.equal(await ask(a, "broadcast", { event: "bin-all", args: payload }), true);
      for (const r of [ra, rb, rc]) assert.deepEqual(normBin(await r.next("bin-all")), normBin(payload));
      assert.equal(await ask(a, "broadcast", { event: "bin-others", args: payload, excludeSelf: true }), true);
      for (const r of [rb, rc]) assert.deepEqual(normBin(await r.next("bin-others")), normBin(payload));
      await ask(a, "echo", 0);
      assert.equal(ra.count("bin-others"), 0);
      assert.equal(ra.count("bin"), 0);
      assert.equal(rc.count("bin"), 0);
      // A large one to several sockets.
      const big = pattern(200 * 1024, 9);
      assert.equal(await ask(a, "broadcast", { event: "bin-big", args: [big] }), true);
      for (const r of [ra, rb, rc]) assert.deepEqual(normBin(await r.next("bin-big", 10000)), [big]);
    });

    test("binary across namespaces on one connection", async () => {
      const { s: root, rec: rr } = await clients.connectRec("/", O());
      const admin = clients.openOn(root, "/admin", { auth: { token: "secret" } });
      const ar = new Recorder(admin);
      await connected(admin);
      await ar.next("welcome");
      const x = pattern(50, 1);
      const y = pattern(60, 2);
      // Interleaved binary packets of two namespaces: each is reassembled with its own buffers.
      root.emit("echo", { x });
      admin.emit("echo", { y });
      root.emit("echo", [y, x]);
      assert.deepEqual(normBin(await rr.next("echo")), [{ x }]);
      assert.deepEqual(normBin(await ar.next("echo")), [{ y }]);
      assert.deepEqual(normBin(await rr.next("echo")), [[y, x]]);
    });
  });
}
