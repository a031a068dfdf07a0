// socket.io 2 clients (the official socket.io-client 2.x, as socket.io-client-v2) against
// sio_test_server --allow-eio3, over polling, websocket and polling+upgrade: "/" joined
// without a CONNECT, text and binary events with acks both ways, the client-driven
// heartbeat over several intervals, a namespace's query as its auth (and its middleware's
// refusal as the v2 "error" event carrying the error's data), an unknown namespace's
// "Invalid namespace", and a server-side disconnect.
import { test, describe, after, before } from "node:test";
import assert from "node:assert/strict";
import ioV2 from "socket.io-client-v2";
import { sleep, startSio, withTimeout } from "./util.mjs";

const TRANSPORTS = [
  { name: "polling", opts: { transports: ["polling"] } },
  { name: "websocket", opts: { transports: ["websocket"] } },
  { name: "polling+upgrade", opts: {} },
];

const once = (s, ev, what = ev) => withTimeout(new Promise((resolve) => s.once(ev, (...a) => resolve(a))), 5000, what);
const ask = (s, ev, ...args) => withTimeout(new Promise((resolve) => s.emit(ev, ...args, (...r) => resolve(r))), 5000, `the ack of ${ev}`);

describe("socket.io 2 clients on sio_test_server --allow-eio3", () => {
  let srv;
  const open = [];
  const connect = (path, opts) => {
    const s = ioV2(`${srv.url}${path}`, { forceNew: true, reconnection: false, ...opts });
    open.push(s);
    return s;
  };
  before(async () => {
    srv = await startSio(["--allow-eio3", "--ping-interval", "300", "--ping-timeout", "200"]);
  });
  after(async () => {
    for (const s of open) s.close();
    await srv?.stop();
  });

  for (const tr of TRANSPORTS) {
    test(`${tr.name}: "/" at once, events and acks with binary, the heartbeat`, async () => {
      const s = connect("/", tr.opts);
      const welcome = once(s, "welcome");
      await once(s, "connect");
      await welcome;
      const bin = Buffer.from([1, 2, 3, 255]);
      const echoed = once(s, "echo");
      const ack = await ask(s, "echo", "héllo 😀", { n: 1 }, bin);
      assert.equal(ack[0], "héllo 😀");
      assert.deepEqual(ack[1], { n: 1 });
      assert.ok(Buffer.isBuffer(ack[2]));
      assert.deepEqual([...ack[2]], [...bin]);
      const ev = await echoed;
      assert.deepEqual([...ev[2]], [...bin]);
      // Several pingInterval + pingTimeout periods: only the client's pings keep it.
      await sleep(1200);
      assert.equal(s.connected, true);
      if (tr.name === "polling+upgrade") assert.equal(s.io.engine.transport.name, "websocket");
      const who = await ask(s, "whoami");
      assert.equal(who[0].nsp, "/");
      assert.deepEqual(who[0].auth, {});
      const gone = once(s, "disconnect");
      s.emit("disconnectMe");
      assert.deepEqual(await gone, ["io server disconnect"]);
    });

    test(`${tr.name}: a namespace's query is its auth; refusals are "error" events`, async () => {
      const ok = connect("/admin", { ...tr.opts, query: { token: "secret" } });
      await once(ok, "connect");
      const who = await ask(ok, "whoami");
      assert.equal(who[0].nsp, "/admin");
      assert.equal(who[0].auth.token, "secret");

      const bad = connect("/admin", { ...tr.opts, query: { token: "nope" } });
      assert.deepEqual(await once(bad, "error"), [{ code: "E_AUTH" }]);
      assert.equal(bad.connected, false);

      const none = connect("/no-such-namespace", tr.opts);
      assert.deepEqual(await once(none, "error"), ["Invalid namespace"]);
    });
  }
});
