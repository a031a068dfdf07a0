// The chat over the msgpack parser: `parley --parser msgpack` with the official
// socket.io-client configured with socket.io-msgpack-parser, over websocket and polling —
// the chat service (src/chat/service.c) unchanged: joinRoom, sendMessage and their acks,
// newMessage to every member, presence and typing, history, refusals, the connect_error of
// a bad token, connection state recovery after a dropped connection. A client of the other
// parser is closed without harm (both ways), and --parser takes only json or msgpack.
import { test, describe, before, beforeEach, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import msgpackParser from "socket.io-msgpack-parser";
import { io } from "socket.io-client";
import { buildDir } from "../lib/server.mjs";
import {
  MESSAGE_FIELDS,
  POLLING,
  WS,
  keysOf,
  newRoom,
  newUser,
  serverPerSuite,
  startParley,
  withTimeout,
} from "./util.mjs";

const withMsgpack = (tr) => ({ name: `${tr.name} + msgpack`, opts: { ...tr.opts, parser: msgpackParser } });
const MPWS = withMsgpack(WS);

// A client of the wrong parser: never connected, its connection closed by the server.
async function closedByServer(url, opts) {
  const s = io(url, { forceNew: true, reconnection: false, timeout: 3000, ...opts, auth: { token: newUser().token } });
  let connectedOnce = false;
  s.on("connect", () => {
    connectedOnce = true;
  });
  const reason = await withTimeout(new Promise((resolve) => s.io.on("close", resolve)), 5000, "the server closing the connection");
  s.close();
  assert.equal(connectedOnce, false, "never connected");
  return reason;
}

for (const tr of [WS, POLLING]) {
  describe(`chat over the msgpack parser, ${tr.name}`, () => {
    const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--parser", "msgpack", "--store", "memory"]), withMsgpack(tr));
    let clients, srv;
    beforeEach(() => {
      ({ clients, srv } = box);
    });

    test("joinRoom, sendMessage and their acks; newMessage to every member; presence, typing, history", async () => {
      const room = newRoom();
      const a = await clients.connect(newUser("Ann"));
      const b = await clients.connect(newUser("Bob"));
      const ja = await a.join(room);
      assert.equal(ja.ack.roomId, room);
      assert.deepEqual(ja.history, []);
      await b.join(room);
      const joined = await a.rec.next("userJoined");
      assert.deepEqual(joined, { userId: b.userId, username: "Bob", roomId: room });

      const text = "héllo 中文 😀 " + "x".repeat(2000);
      const ack = await a.send(room, text);
      assert.deepEqual(keysOf(ack), ["id", "ok", "seq", "timestamp"]);
      assert.equal(ack.seq, 1);
      assert.ok(Number.isInteger(ack.timestamp), "an integer timestamp stays an integer");
      const want = { id: ack.id, seq: 1, roomId: room, userId: a.userId, username: "Ann", text, timestamp: ack.timestamp };
      for (const c of [a, b]) {
        const m = await c.rec.next("newMessage");
        assert.deepEqual(keysOf(m), MESSAGE_FIELDS);
        assert.deepEqual(m, want);
      }

      assert.deepEqual(await b.ask("typing", { roomId: room, isTyping: true }), { ok: true });
      assert.deepEqual(await a.rec.next("userTyping"), { userId: b.userId, username: "Bob", isTyping: true, roomId: room });

      const h = await b.ask("history", { roomId: room, limit: 10 });
      assert.equal(h.ok, true);
      assert.deepEqual(h.messages, [want]);

      // Refusals come back through the ack as with the json parser.
      assert.deepEqual(await a.ask("sendMessage", { roomId: room, text: "" }), { ok: false, error: "invalid_payload" });
      assert.deepEqual(await a.ask("sendMessage", { roomId: newRoom(), text: "x" }), { ok: false, error: "not_in_room" });
      assert.deepEqual(await a.ask("joinRoom", "not an object"), { ok: false, error: "invalid_payload" });
    });

    test("a bad token: connect_error with the chat's message", async () => {
      const err = await clients.refused({ token: "not-a-jwt" });
      assert.equal(err.message, "Authentication failed");
      const none = await clients.refused(undefined);
      assert.equal(none.message, "Authentication failed");
      // The server is still there for good clients.
      const c = await clients.connect();
      await c.join(newRoom());
    });

    test("a client of the default parser is closed, not crashed", async () => {
      const reason = await closedByServer(srv.url, tr.opts);
      assert.ok(["transport close", "transport error", "parse error"].includes(reason), reason);
      const c = await clients.connect();
      const room = newRoom();
      await c.join(room);
      assert.equal((await c.send(room, "still serving")).seq, 1);
    });
  });
}

describe("chat over the msgpack parser: recovery", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--parser", "msgpack", "--store", "memory"]), MPWS);
  let clients;
  beforeEach(() => {
    clients = box.clients;
  });

  test("a dropped connection comes back recovered, with the newMessages it missed, in order", async () => {
    const room = newRoom();
    const s = await clients.connect();
    await s.join(room);
    const r = await clients.connect(newUser("Roamer"), { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 });
    await r.join(room);
    await s.send(room, "m1");
    assert.equal((await r.rec.next("newMessage")).text, "m1");

    const back = withTimeout(new Promise((resolve) => r.s.once("connect", resolve)), 5000, "the reconnection");
    const gone = new Promise((resolve) => r.s.once("disconnect", resolve));
    r.s.io.engine.transport.ws.terminate();
    await withTimeout(gone, 5000, "the client to notice the drop");
    for (const t of ["m2", "m3", "m4"]) await s.send(room, t);
    await back;
    assert.equal(r.s.recovered, true, "socket.recovered");
    await s.send(room, "m5");
    await r.rec.waitCount("newMessage", 5);
    await r.flush();
    assert.deepEqual(
      r.rec.of("newMessage").map((m) => [m.seq, m.text]),
      [1, 2, 3, 4, 5].map((i) => [i, `m${i}`]),
    );
    assert.equal(r.rec.count("messageHistory"), 1, "no new joinRoom happened");
  });
});

describe("the parser is the server's: a msgpack client on a json server", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--store", "memory"]), WS);
  test("is closed, not crashed; json clients go on", async () => {
    const reason = await closedByServer(box.srv.url, MPWS.opts);
    assert.ok(["transport close", "transport error", "parse error"].includes(reason), reason);
    const c = await box.clients.connect();
    await c.join(newRoom());
  });
});

test("--parser takes json or msgpack only", async () => {
  const r = await new Promise((resolve) =>
    execFile(path.join(buildDir, "parley"), ["--port", "0", "--parser", "cbor"], (err, stdout, stderr) => resolve({ code: err?.code ?? 0, stderr })),
  );
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--parser must be json or msgpack/);
});
