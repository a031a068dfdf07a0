// socket.io 2 clients (Engine.IO v3) with `parley --allow-eio3`: the official
// socket.io-client 2.x from npm (as the alias socket.io-client-v2) over polling, over
// websocket and upgrading from one to the other, with the token in the handshake query
// (v2 clients send no CONNECT auth payload): joinRoom and sendMessage with their acks,
// newMessage between a v2 and a v4 client in the same room both ways, a bad token as the
// v2 client's "error" event with the chat's message, and EIO=3 refused without the option.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import ioV2 from "socket.io-client-v2";
import { io as ioV4 } from "socket.io-client";
import { newRoom, newUser, startParley, withTimeout } from "./util.mjs";

const V2_TRANSPORTS = [
  { name: "polling", opts: { transports: ["polling"] } },
  { name: "websocket", opts: { transports: ["websocket"] } },
  { name: "polling then websocket", opts: { transports: ["polling", "websocket"] } },
];

function openV2(srv, query, opts) {
  return ioV2(srv.url, { forceNew: true, reconnection: false, timeout: 5000, query, ...opts });
}

// Resolves once the v2 socket is connected; rejects on its "error" or connect_error.
function v2Connected(s) {
  return withTimeout(
    new Promise((resolve, reject) => {
      s.once("connect", resolve);
      s.once("error", (e) => reject(new Error(`error: ${JSON.stringify(e)}`)));
      s.once("connect_error", (e) => reject(e));
    }),
    5000,
    "the v2 client connecting",
  );
}

// emit with an ack callback (v2 has no emitWithAck), bounded.
function v2Ask(s, ev, payload) {
  return withTimeout(new Promise((resolve) => s.emit(ev, payload, resolve)), 5000, `the ack of ${ev}`);
}

function nextEvent(s, ev) {
  return withTimeout(new Promise((resolve) => s.once(ev, resolve)), 5000, `a ${ev} event`);
}

describe("socket.io 2 clients with --allow-eio3", () => {
  let srv;
  const sockets = [];
  before(async () => {
    srv = await startParley(["--allow-eio3", "--store", "memory"]);
  });
  after(async () => {
    for (const s of sockets) s.close();
    await srv?.stop();
    srv?.cleanup();
  });

  for (const tr of V2_TRANSPORTS) {
    test(`${tr.name}: chat events and acks with a v4 client in the same room`, async () => {
      const room = newRoom();
      const ann = newUser("Ann");
      const bob = newUser("Bob");
      const v2 = openV2(srv, { token: ann.token }, tr.opts);
      sockets.push(v2);
      const history = nextEvent(v2, "messageHistory");
      await v2Connected(v2);
      const joined = await v2Ask(v2, "joinRoom", { roomId: room });
      assert.equal(joined.ok, true);
      assert.equal(joined.roomId, room);
      assert.deepEqual(await history, []);

      const v4 = ioV4(srv.url, { forceNew: true, reconnection: false, auth: { token: bob.token }, transports: ["websocket"] });
      sockets.push(v4);
      await withTimeout(new Promise((resolve, reject) => {
        v4.once("connect", resolve);
        v4.once("connect_error", reject);
      }), 5000, "the v4 client connecting");
      const userJoined = nextEvent(v2, "userJoined");
      assert.equal((await v4.timeout(5000).emitWithAck("joinRoom", { roomId: room })).ok, true);
      assert.deepEqual(await userJoined, { userId: bob.userId, username: "Bob", roomId: room });

      // v2 → everyone: the ack, then newMessage to both (multi-byte text: v3 polling
      // lengths count UTF-16 units, not bytes).
      const text = "héllo 中文 😀 " + "x".repeat(300);
      const atV2 = nextEvent(v2, "newMessage");
      const atV4 = nextEvent(v4, "newMessage");
      const ack = await v2Ask(v2, "sendMessage", { roomId: room, text });
      assert.equal(ack.ok, true);
      assert.equal(ack.seq, 1);
      const want = { id: ack.id, seq: 1, roomId: room, userId: ann.userId, username: "Ann", text, timestamp: ack.timestamp };
      assert.deepEqual(await atV2, want);
      assert.deepEqual(await atV4, want);

      // v4 → the v2 client.
      const back = nextEvent(v2, "newMessage");
      const ack4 = await v4.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: "to 🌍 v2" });
      assert.equal(ack4.ok, true);
      const got = await back;
      assert.equal(got.text, "to 🌍 v2");
      assert.equal(got.userId, bob.userId);
      assert.equal(got.seq, 2);

      // A refusal comes back through the ack, as for v4 clients.
      const refused = await v2Ask(v2, "sendMessage", { roomId: newRoom(), text: "x" });
      assert.equal(refused.ok, false);

      if (tr.name === "polling then websocket") {
        await withTimeout(
          new Promise((resolve) => (v2.io.engine.transport.name === "websocket" ? resolve() : v2.io.engine.once("upgrade", resolve))),
          5000,
          "the upgrade",
        );
        const after = nextEvent(v4, "newMessage");
        assert.equal((await v2Ask(v2, "sendMessage", { roomId: room, text: "over ws" })).ok, true);
        assert.equal((await after).text, "over ws");
      }
      v2.close();
      v4.close();
    });

    test(`${tr.name}: a bad token is the v2 client's error event with the chat's message`, async () => {
      const s = openV2(srv, { token: "not-a-jwt" }, tr.opts);
      sockets.push(s);
      let connected = false;
      s.on("connect", () => (connected = true));
      const err = await nextEvent(s, "error");
      assert.equal(err, "Authentication failed");
      assert.equal(connected, false);
      s.close();
    });
  }

  test("no token at all is refused the same way", async () => {
    const s = openV2(srv, {}, { transports: ["websocket"] });
    sockets.push(s);
    assert.equal(await nextEvent(s, "error"), "Authentication failed");
    s.close();
  });
});

describe("without --allow-eio3", () => {
  let srv;
  before(async () => {
    srv = await startParley(["--store", "memory"]);
  });
  after(async () => {
    await srv?.stop();
    srv?.cleanup();
  });

  for (const tr of V2_TRANSPORTS.slice(0, 2)) {
    test(`${tr.name}: a v2 client is refused`, async () => {
      const s = openV2(srv, { token: newUser().token }, tr.opts);
      let connected = false;
      s.on("connect", () => (connected = true));
      const e = await nextEvent(s, "connect_error");
      assert.ok(e instanceof Error);
      assert.equal(connected, false);
      s.close();
    });
  }

  test("EIO=3 is answered with code 5", async () => {
    const r = await fetch(`${srv.url}/socket.io/?EIO=3&transport=polling`);
    assert.equal(r.status, 400);
    assert.deepEqual(await r.json(), { code: 5, message: "Unsupported protocol version" });
  });
});
