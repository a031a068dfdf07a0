// The msgpack parser (--parser msgpack, src/sio/parser_msgpack.c) with the official client
// configured with socket.io-msgpack-parser, over websocket, polling and the upgrade:
// events and acks both ways with every kind of value, Buffers nested anywhere (as
// MessagePack bin), broadcasts to rooms, namespaces and their connect_errors, connection
// state recovery after a dropped transport (binary among the missed packets). Then what
// must fail cleanly: a client of the default parser, a malformed MessagePack frame, a text
// frame — each connection closed, the server serving the next client.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import msgpackParser from "socket.io-msgpack-parser";
import { io } from "socket.io-client";
import {
  ALL_TRANSPORTS,
  RawWs,
  Recorder,
  WS,
  ask,
  connectError,
  connected,
  dropTransport,
  droppable,
  normBin,
  once,
  restoreNetwork,
  serverReasons,
  sioServerHooks,
  stats,
  waitStats,
  withTimeout,
} from "./util.mjs";

const MP = { parser: msgpackParser };
const HEARTBEAT = ["--ping-interval", "300", "--ping-timeout", "300"];

function pattern(len, seed) {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed) & 255;
  return b;
}

// The args without the recovery offset (a decimal string, last) the server appends.
function withoutOffset(args) {
  assert.match(String(args.at(-1)), /^[A-Za-z]?\d+$/, `no offset in ${JSON.stringify(args)}`);
  return args.slice(0, -1);
}

for (const tr of ALL_TRANSPORTS) {
  describe(`msgpack parser over ${tr.name}`, () => {
    let srv, clients;
    const O = (extra = {}) => ({ ...tr.opts, ...MP, ...extra });
    sioServerHooks((s, c) => ([srv, clients] = [s, c]), ["--parser", "msgpack", "--recovery", ...HEARTBEAT]);

    async function roundTrip(s, rec, args) {
      const acked = await new Promise((resolve) => s.emit("echo", ...args, (...a) => resolve(a)));
      const echoed = withoutOffset(await rec.next("echo", 10000));
      assert.deepEqual(normBin(acked), normBin(args), "ack");
      assert.deepEqual(normBin(echoed), normBin(args), "echo event");
      for (const a of [acked, echoed]) {
        const json = JSON.stringify(a, (k, v) => (v && v.type === "Buffer" ? "<bin>" : v));
        assert.ok(!json.includes("_placeholder"), json.slice(0, 200));
      }
      return { acked, echoed };
    }

    test("the CONNECT reply, and values of every MessagePack kind both ways", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      assert.ok(s.id && s.id.length > 0, "sid from the CONNECT reply");
      assert.equal(s._pid !== undefined, true, "pid from the CONNECT reply (recovery)");
      const { acked } = await roundTrip(s, rec, [
        "text é中😀",
        0,
        -1,
        127,
        128,
        65536,
        -2147483649,
        2 ** 53 - 1,
        1.5,
        -0.25,
        true,
        false,
        null,
        "",
        [],
        {},
        { nested: { arr: [1, [2, [3, { x: "y" }]]] } },
        "a".repeat(70000),
      ]);
      // Integers stay integers, fractions stay fractions.
      assert.ok(Number.isInteger(acked[1]) && acked[8] === 1.5);
      // An undefined argument travels as nil, as JSON would make it null.
      assert.equal(await ask(s, "echo", undefined), null);
      // A Date: notepack's timestamp, received as its ISO text (what JSON.stringify makes of it).
      const when = new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789));
      assert.equal(await ask(s, "echo", when), when.toISOString());
    });

    test("Buffers nested in objects and arrays, empty, ten in one packet, 500 KB", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      await roundTrip(s, rec, [Buffer.from("hello")]);
      await roundTrip(s, rec, [
        { a: Buffer.from([1, 2, 3]), nested: { arr: [pattern(10, 1), 1, "x", { deep: [[pattern(3, 2)]] }] } },
        "text",
        [pattern(5, 3), null, true],
      ]);
      await roundTrip(s, rec, [new Uint8Array([9, 8, 7]), pattern(4, 4).buffer.slice(0, 4)]);
      await roundTrip(s, rec, [Buffer.alloc(0), { e: Buffer.alloc(0) }]);
      await roundTrip(s, rec, Array.from({ length: 10 }, (_, i) => pattern(100 + i, i)));
      await roundTrip(s, rec, ["before", { big: pattern(500 * 1024, 42) }, "after"]);
    });

    test("acks the server asks for, with binary both ways", async () => {
      const { s, rec } = await clients.connectRec("/", O());
      s.on("ping-me", (a, b, cb) => cb({ got: a, bin: b, back: pattern(7, 9) }));
      assert.equal(await ask(s, "serverAck", { event: "ping-me", args: ["x", pattern(3, 1)], timeout: 3000 }), true);
      const [result] = withoutOffset(await rec.next("server-ack-result", 10000));
      assert.equal(result.err, 0);
      assert.deepEqual(normBin(result.args), [{ got: "x", bin: pattern(3, 1), back: pattern(7, 9) }]);
    });

    test("broadcasts to rooms, with binary, encoded once for msgpack recipients", async () => {
      const { s: a } = await clients.connectRec("/", O());
      const { s: b, rec: rb } = await clients.connectRec("/", O());
      const { rec: rc } = await clients.connectRec("/", O());
      assert.equal(await ask(b, "join", "r1"), true);
      const payload = { file: pattern(2000, 5), name: "f.bin" };
      assert.equal(await ask(a, "broadcast", { event: "news", args: ["hi", payload], rooms: ["r1"] }), true);
      assert.deepEqual(normBin(withoutOffset(await rb.next("news"))), ["hi", payload]);
      assert.equal(await ask(a, "broadcast", { event: "all", args: [1] }), true);
      assert.deepEqual(withoutOffset(await rc.next("all")), [1]);
      assert.equal(rc.of("news").length, 0, "not in r1");
      // Pre-encoded JSON arguments (sio_nsp_emit_json) go out as MessagePack too.
      assert.equal(await ask(a, "emitJson", { event: "pre", json: '[1,{"a":[true,null]},"z"]' }), true);
      assert.deepEqual(withoutOffset(await rc.next("pre")), [1, { a: [true, null] }, "z"]);
    });

    test("namespaces: middleware refusal with data, Invalid namespace, multiplexing", async () => {
      const refused = await connectError(clients.open("/admin", O({ auth: { token: "wrong" } })));
      assert.equal(refused.message, "not authorized");
      assert.deepEqual(refused.data, { code: "E_AUTH" });
      const invalid = await connectError(clients.open("/nope", O()));
      assert.equal(invalid.message, "Invalid namespace");
      const main = await clients.connect("/", O());
      const admin = clients.openOn(main, "/admin", { auth: { token: "secret" } });
      await connected(admin);
      assert.equal(main.io.engine.id, admin.io.engine.id, "one connection");
      const who = await ask(admin, "whoami");
      assert.equal(who.nsp, "/admin");
      assert.deepEqual(normBin(await ask(admin, "echo", pattern(4, 4))), pattern(4, 4));
      const dyn = clients.openOn(main, "/dyn-mp");
      await connected(dyn);
      assert.equal((await ask(dyn, "whoami")).nsp, "/dyn-mp");
    });

    test("recovery after a dropped transport: same id, every missed packet, binary included", async () => {
      const sender = await clients.connect("/", { ...WS.opts, ...MP });
      const { s: t, rec } = await clients.connectRec("/", droppable(O()));
      assert.equal(await ask(t, "join", "room1"), true);
      const id = t.id;
      const d = once(t, "disconnect");
      const before = (await stats(srv)).recoverySessions;
      dropTransport(t, { downMs: 60000 });
      await d;
      await serverReasons(srv, id, { timeoutMs: 5000 });
      await waitStats(srv, (st) => st.recoverySessions > before, "the session kept for recovery");
      const bin = pattern(300, 7);
      const expected = [];
      for (let i = 0; i < 6; i++) {
        const args = i % 2 ? [i, { b: bin }] : [i, "text"];
        assert.equal(await ask(sender, "broadcast", { event: "m", args, rooms: ["room1"] }), true);
        expected.push(args);
      }
      restoreNetwork(t);
      await rec.next("welcome", 10000);
      assert.equal(t.recovered, true, "socket.recovered");
      assert.equal(t.id, id, "same socket id");
      await rec.waitCount("m", expected.length, 10000);
      assert.deepEqual(normBin(rec.argsOf("m").map(withoutOffset)), normBin(expected));
    });
  });
}

describe("msgpack parser: what must fail cleanly", () => {
  let srv, clients;
  sioServerHooks((s, c) => ([srv, clients] = [s, c]), ["--parser", "msgpack"], { idle: false });

  // A client of the other parser never connects; the connection is closed by the server.
  async function refusedClient(opts) {
    const s = io(srv.url, { forceNew: true, reconnection: false, timeout: 3000, ...opts });
    let connectedOnce = false;
    s.on("connect", () => {
      connectedOnce = true;
    });
    const closed = new Promise((resolve) => s.io.on("close", (reason) => resolve(reason)));
    const reason = await withTimeout(closed, 5000, "the server closing the connection");
    assert.equal(connectedOnce, false);
    s.close();
    return reason;
  }

  for (const tr of [WS, { name: "polling", opts: { transports: ["polling"] } }]) {
    test(`a client of the default parser over ${tr.name} is closed, not crashed`, async () => {
      const reason = await refusedClient(tr.opts);
      assert.ok(["transport close", "transport error", "parse error"].includes(reason), reason);
      assert.match(srv.stderr(), /malformed packet; closing/);
      // The next msgpack client is served.
      const s = await clients.connect("/", { ...tr.opts, ...MP });
      assert.equal(await ask(s, "echo", "alive"), "alive");
      clients.closeAll();
    });
  }

  test("malformed MessagePack and text frames on a raw websocket close that connection only", async () => {
    const good = await clients.connect("/", { ...WS.opts, ...MP });
    const frames = [
      Buffer.from([0xc1]), // never used
      Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff]), // a map of 4 billion entries, no bytes
      Buffer.from([0x93, 0x00, 0xa1, 0x2f, 0x90]), // an array, not a map
      Buffer.from([0x82, 0xa4, 0x74, 0x79, 0x70, 0x65, 0x05, 0xa3, 0x6e, 0x73, 0x70, 0xa1, 0x2f]), // type 5
      "40", // text: the default parser's CONNECT
    ];
    for (const f of frames) {
      const raw = new RawWs(srv, { autoPong: true });
      await raw.open();
      raw.send(f);
      await raw.waitClosed(5000);
    }
    assert.equal(await ask(good, "echo", "still here"), "still here");
    clients.closeAll();
  });
});
