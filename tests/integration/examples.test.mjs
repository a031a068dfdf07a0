// The examples are part of the product: each one starts, does what its header comment
// says with the official clients, and stops cleanly (no leak under ASan).
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { Socket as EioSocket } from "engine.io-client";
import { startServer } from "./lib/server.mjs";

function connect(url, opts = {}) {
  const socket = io(url, { forceNew: true, reconnection: false, ...opts });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

for (const transports of [["websocket"], ["polling"]]) {
  describe(`sio_echo over ${transports[0]}`, () => {
    let srv;
    before(async () => {
      srv = await startServer("sio_echo");
    });
    after(async () => {
      await srv.stop();
    });

    it("acks echo with the same arguments, binary included", async () => {
      const s = await connect(srv.url, { transports });
      const reply = await s.timeout(5000).emitWithAck("echo", "hello", Buffer.from([1, 2, 3]));
      assert.equal(reply, "hello");
      const args = await new Promise((resolve) => {
        s.once("echo", (...a) => resolve(a));
        s.emit("echo", { n: 1 }, Buffer.from([9]));
      });
      assert.deepEqual(args[0], { n: 1 });
      assert.deepEqual([...args[1]], [9]);
      s.close();
    });

    it("broadcasts chat to every client", async () => {
      const a = await connect(srv.url, { transports });
      const b = await connect(srv.url, { transports });
      const got = Promise.all([a, b].map((s) => new Promise((r) => s.once("chat", r))));
      a.emit("chat", "hi all");
      assert.deepEqual(await got, ["hi all", "hi all"]);
      a.close();
      b.close();
    });
  });
}

describe("sio_conformance", () => {
  let srv;
  before(async () => {
    srv = await startServer("sio_conformance");
  });
  after(async () => {
    await srv.stop();
  });

  it("sends auth on connect, answers message and message-with-ack", async () => {
    const auth = new Promise((resolve) => {
      const s = io(srv.url, { forceNew: true, auth: { token: "t" } });
      s.once("auth", (a) => resolve({ s, a }));
    });
    const { s, a } = await auth;
    assert.deepEqual(a, { token: "t" });
    const back = new Promise((r) => s.once("message-back", (...args) => r(args)));
    s.emit("message", 1, "2", { 3: [true] });
    assert.deepEqual(await back, [1, "2", { 3: [true] }]);
    const acked = await s.timeout(5000).emitWithAck("message-with-ack", "x");
    assert.equal(acked, "x");
    s.close();
  });

  it("serves the /custom namespace and refuses unknown ones", async () => {
    const custom = io(srv.url + "/custom", { forceNew: true });
    assert.deepEqual(await new Promise((r) => custom.once("auth", r)), {});
    custom.close();
    const bad = io(srv.url + "/random", { forceNew: true });
    const err = await new Promise((r) => bad.once("connect_error", r));
    assert.equal(err.message, "Invalid namespace");
    bad.close();
  });

  it("echoes at /engine.io/", async () => {
    const s = new EioSocket(srv.url, { path: "/engine.io/", transports: ["websocket"] });
    const echoed = new Promise((r) => s.once("message", r));
    s.once("open", () => s.send("ping me"));
    assert.equal(await echoed, "ping me");
    s.close();
  });
});
