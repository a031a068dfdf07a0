// Connection state recovery across nodes (parley/redis.h): a client that drops from one
// Parley node and comes back to another gets its session (id, rooms, data) and exactly
// the packets it missed, in order — which socket.io's own Redis adapter cannot do. A Node
// node in the same Redis ignores the recovery requests and is never waited for; a pid no
// node keeps gets a fresh session at once; a session the new node's application refuses
// goes back to the node that kept it.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { Server } from "socket.io";
import { io } from "socket.io-client";

import { nodeAdapter, redisClient, shardNumSub, startRedisForSuite } from "../lib/redis.mjs";
import { startServer } from "../lib/server.mjs";
import { connected, Recorder } from "../lib/sio.mjs";
import { waitUntil } from "../lib/wait.mjs";

const T = { timeout: 60000 };

describe("recovery across Parley nodes over Redis", () => {
  let redis, a, b, node, pub, sub;
  const clients = [];

  before(async () => {
    redis = await startRedisForSuite();
    pub = redisClient(redis.url);
    sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    node = new Server(createServer(), { adapter: nodeAdapter(pub, sub) });
    const args = ["--recovery", "--redis-url", redis.url, "--ping-interval", "300", "--ping-timeout", "300"];
    [a, b] = await Promise.all([startServer("sio_test_server", args), startServer("sio_test_server", args)]);
    await waitUntil(async () => (await node.of("/").adapter.serverCount()) === 3, { what: "three nodes" });
  });

  after(async () => {
    for (const c of clients) c.close();
    node?.close();
    await a?.stop();
    await b?.stop();
    await Promise.all([pub, sub].map((c) => c?.quit().catch(() => {})));
    await redis?.stop();
  });

  const open = (url, opts = {}) => {
    const s = io(url, { forceNew: true, reconnection: false, transports: ["websocket"], ...opts });
    clients.push(s);
    return s;
  };
  const ask = (s, ev, ...args) => s.timeout(5000).emitWithAck(ev, ...args);
  const lastArg = (args) => args.at(-1);

  // A socket to `url` that offers the session (pid, offset) of another: what
  // socket.io-client sends when it reconnects, here to a different node.
  async function comeBack(url, pid, offset) {
    const s = open(url, { autoConnect: false });
    s._pid = pid;
    s._lastOffset = offset;
    const rec = new Recorder(s);
    s.connect();
    await connected(s);
    return { s, rec };
  }

  it("a client gone from node A comes back to node B: same id, rooms, data, every missed packet in order", T, async () => {
    const t = open(a.url);
    const rec0 = new Recorder(t);
    await connected(t);
    await ask(t, "join", "r1");
    await ask(t, "dataSet", { user: "u1" });
    const sender = open(b.url);
    await connected(sender);
    await ask(sender, "broadcast", { event: "pre", args: [0], rooms: ["r1"] });
    const [pre] = await rec0.next("pre");
    assert.equal(pre, 0);
    const { _pid: pid, _lastOffset: offset, id } = t;
    assert.ok(pid && offset, "the client has a session to recover");
    // Dropped without a goodbye: node A keeps the session.
    t.io.engine.transport.ws.terminate();
    await waitUntil(async () => (await (await fetch(`${a.url}/stats`)).json()).recoverySessions > 0, { what: "kept on A" });
    for (let i = 1; i <= 5; i++) await ask(sender, "broadcast", { event: "m", args: [i, Buffer.from([i])], rooms: ["r1"] });
    await ask(sender, "broadcast", { event: "m", args: [99], rooms: ["elsewhere"] });
    const t0 = Date.now();
    const { s, rec } = await comeBack(b.url, pid, offset);
    assert.ok(Date.now() - t0 < 2000, `recovered in ${Date.now() - t0} ms`);
    assert.equal(s.recovered, true, "socket.recovered");
    assert.equal(s.id, id, "the same socket id");
    await rec.waitCount("m", 5);
    assert.deepEqual(rec.of("m").map((args) => [args[0], [...args[1]]]), [1, 2, 3, 4, 5].map((i) => [i, [i]]));
    assert.ok((await ask(s, "rooms")).includes("r1"));
    assert.deepEqual(await ask(s, "dataGet"), { user: "u1" });
    // It lives on B now: B's broadcasts reach it, and the session left A.
    await ask(sender, "broadcast", { event: "after", args: ["b"], rooms: ["r1"] });
    await rec.next("after");
    const stA = await (await fetch(`${a.url}/stats`)).json();
    assert.equal(stA.recoverySessions, 0, "lent for good");
    assert.ok(typeof lastArg(rec.of("after")[0]) === "string");
  });

  it("a pid no node keeps: a fresh session at once, the Node node not waited for", T, async () => {
    const t0 = Date.now();
    const { s } = await comeBack(b.url, "nosuchpid0000000000000", "x-1");
    assert.equal(s.recovered, false);
    assert.ok(Date.now() - t0 < 2000, `${Date.now() - t0} ms`);
  });
});
