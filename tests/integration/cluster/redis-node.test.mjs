// A Parley node and a Node.js socket.io 4.8 node with @socket.io/redis-adapter 8 in one
// real redis-server (parley/redis.h): every operation both ways, binary included, and no
// Node call waiting for its 5 s requests timeout (each is bounded well below it). Also
// @socket.io/redis-emitter publishing from outside both. With PARLEY_TEST_REDIS_MODE=sharded
// (or sharded-static) both nodes use the sharded adapter (createShardedAdapter, SPUBLISH /
// SSUBSCRIBE) in that subscription mode instead.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { Emitter } from "@socket.io/redis-emitter";
import { Server } from "socket.io";
import { io } from "socket.io-client";

import { nodeAdapter, redisClient, shardNumSub, startRedisForSuite } from "../lib/redis.mjs";
import { redisMode, startServer } from "../lib/server.mjs";
import { connected, Recorder } from "../lib/sio.mjs";
import { waitUntil, withTimeout } from "../lib/wait.mjs";

const T = { timeout: 60000 };
// Well below the adapter's 5 s: an answer that only comes by timeout fails the test.
const FAST = 2000;
const sharded = redisMode !== "classic";

describe("Parley and Node.js socket.io nodes over Redis", () => {
  let redis, parley, node, nodeUrl, pub, sub, emitterClient;
  const clients = [];

  before(async () => {
    redis = await startRedisForSuite();
    pub = redisClient(redis.url);
    sub = pub.duplicate();
    emitterClient = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect(), emitterClient.connect()]);
    const http = createServer();
    node = new Server(http, { adapter: nodeAdapter(pub, sub) });
    node.on("connection", (s) => {
      s.on("join", (room, cb) => {
        s.join(room);
        cb(true);
      });
      s.on("rooms", (cb) => cb([...s.rooms]));
      s.data.kind = "node";
    });
    node.of("/").on("hello", (...args) => {
      const cb = args.pop();
      cb({ from: "node", args });
    });
    await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
    nodeUrl = `http://127.0.0.1:${http.address().port}`;
    parley = await startServer("sio_test_server", ["--redis-url", redis.url]);
    // Parley is a node once it subscribed to the request channel.
    await waitUntil(async () => (await node.of("/").adapter.serverCount()) === 2, { what: "two nodes counted" });
  });

  after(async () => {
    for (const c of clients) c.close();
    node?.close();
    await parley?.stop();
    await Promise.all([pub, sub, emitterClient].map((c) => c?.quit().catch(() => {})));
    await redis?.stop();
  });

  const open = async (url) => {
    const s = io(url, { forceNew: true, reconnection: false, transports: ["websocket"] });
    clients.push(s);
    await connected(s);
    return s;
  };
  const ask = (s, ev, ...args) => s.timeout(FAST).emitWithAck(ev, ...args);
  const onParley = () => open(parley.url);
  const onNode = () => open(nodeUrl);
  let seq = 0;
  const room = () => `room-${++seq}`;
  // In the dynamic sharded mode a join is acknowledged before its node's SSUBSCRIBE of the
  // room's channel is done (on another connection, as with Node's adapter): a broadcast
  // sent at once could miss that node. Waited for here, as an application would not.
  const subscribed = async (r, nodes) => {
    if (!["sharded", "cluster"].includes(redisMode)) return;
    await waitUntil(async () => (await shardNumSub(pub, `socket.io#/#${r}#`)) === nodes, { what: `${nodes} nodes on room ${r}'s channel` });
  };

  it("broadcasts cross both ways: rooms, except, the whole namespace, binary", T, async () => {
    const r = room();
    const [p1, p2, n1, n2] = await Promise.all([onParley(), onParley(), onNode(), onNode()]);
    await Promise.all([ask(p1, "join", r), ask(n1, "join", r), ask(n2, "join", `${r}-x`), ask(n2, "join", r)]);
    await subscribed(r, 2);
    const recs = [p1, p2, n1, n2].map((s) => new Recorder(s));
    // From Node: a room minus an except room, with binary.
    node.to(r).except(`${r}-x`).emit("fromNode", 1, { b: Buffer.from([1, 2, 3]) });
    // From Parley: the same room, and the whole namespace.
    assert.equal(await ask(p2, "broadcast", { event: "fromParley", args: [2, "two"], rooms: [r] }), true);
    assert.equal(await ask(p2, "broadcast", { event: "everyone", args: [] }), true);
    await Promise.all(recs.map((rec) => rec.next("everyone")));
    node.emit("marker");
    await Promise.all(recs.map((rec) => rec.next("marker")));
    const [rp1, rp2, rn1, rn2] = recs;
    assert.deepEqual(rp1.argsOf("fromNode").map(([n, o]) => [n, [...o.b]]), [[1, [1, 2, 3]]]);
    assert.deepEqual(rn1.argsOf("fromNode").map(([n, o]) => [n, [...o.b]]), [[1, [1, 2, 3]]]);
    assert.deepEqual(rn2.argsOf("fromNode"), [], "excluded");
    assert.deepEqual(rp2.argsOf("fromNode"), [], "not in the room");
    for (const rec of [rp1, rn1, rn2]) assert.deepEqual(rec.argsOf("fromParley"), [[2, "two"]]);
    assert.deepEqual(rp2.argsOf("fromParley"), []);
  });

  it("a socket's own room reaches it from the other node, both ways", T, async () => {
    const [p, n] = await Promise.all([onParley(), onNode()]);
    const [rp, rn] = [new Recorder(p), new Recorder(n)];
    node.to(p.id).emit("toParleySocket", "from node");
    assert.equal(await ask(p, "broadcast", { event: "toNodeSocket", args: ["from parley"], rooms: [n.id] }), true);
    assert.deepEqual(await rp.next("toParleySocket"), ["from node"]);
    assert.deepEqual(await rn.next("toNodeSocket"), ["from parley"]);
  });

  it("in the dynamic sharded mode a room's channel is subscribed while it has members on the node", { ...T, skip: !["sharded", "cluster"].includes(redisMode) && "dynamic sharded mode only" }, async () => {
    const r = room();
    const channel = `socket.io#/#${r}#`;
    const subscribers = () => shardNumSub(pub, channel);
    assert.equal(await subscribers(), 0);
    const [p1, p2] = await Promise.all([onParley(), onParley()]);
    await Promise.all([ask(p1, "join", r), ask(p2, "join", r)]);
    // Subscribed on another connection than the one the ack came on: waited for.
    await waitUntil(async () => (await subscribers()) === 1, { what: "the room's channel subscribed" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await subscribers(), 1, "one subscription for the node, whatever its members");
    // A broadcast from Node to the room travels on the room's channel and reaches them.
    const rec = new Recorder(p1);
    node.to(r).emit("inRoom", 1);
    assert.deepEqual(await rec.next("inRoom"), [1]);
    await ask(p1, "leave", r);
    assert.equal(await subscribers(), 1, "p2 is still in it");
    p2.disconnect();
    await waitUntil(async () => (await subscribers()) === 0, { what: "unsubscribed once empty" });
  });

  it("Node's fetchSockets, allRooms and serverSideEmit are answered by Parley at once", T, async () => {
    const r = room();
    const p = await onParley();
    await ask(p, "join", r);
    await ask(p, "dataSet", { user: "u-p" });
    const n = await onNode();
    const t0 = Date.now();
    const sockets = await node.in(r).fetchSockets();
    assert.deepEqual(sockets.map((s) => s.id), [p.id]);
    assert.ok(sockets[0].rooms.has(r) && sockets[0].rooms.has(p.id));
    assert.deepEqual(sockets[0].data, { user: "u-p" });
    assert.equal(sockets[0].handshake.query.EIO, "4");
    const all = await node.fetchSockets();
    assert.ok(n.connected);
    assert.deepEqual(new Set(all.map((s) => s.id)), new Set(clients.filter((c) => c.connected).map((c) => c.id)), "every socket of both nodes");
    if (!sharded) {
      // The sharded adapter's allRooms is its own node's only.
      const rooms = await node.of("/").adapter.allRooms();
      assert.ok(rooms.has(r) && rooms.has(p.id));
    }
    const answers = await node.serverSideEmitWithAck("hello", { x: 1 });
    assert.equal(answers.length, 1);
    assert.equal(answers[0].event, "hello");
    assert.deepEqual(answers[0].args, [{ x: 1 }]);
    assert.ok(Date.now() - t0 < FAST, `${Date.now() - t0} ms`);
  });

  it("Parley's fetchSockets and serverSideEmit are answered by Node", T, async () => {
    const r = room();
    const p = await onParley();
    const n = await onNode();
    await ask(n, "join", r);
    assert.deepEqual(await ask(p, "fetchSockets", { rooms: [r] }), [n.id]);
    const rec = new Recorder(p);
    assert.equal(await ask(p, "serverEmit", { event: "hello", args: [7], ack: true, timeout: FAST }), true);
    const [result] = await rec.next("server-emit-result");
    assert.equal(result.err, 0);
    assert.deepEqual(result.responses, [{ from: "node", args: [7] }]);
  });

  it("broadcasts with acknowledgements collect the answers of both nodes' sockets, both ways", T, async () => {
    const r = room();
    const [p, n] = await Promise.all([onParley(), onNode()]);
    await Promise.all([ask(p, "join", r), ask(n, "join", r)]);
    p.on("ask", (...args) => args.pop()(`parley:${args[0]}`));
    n.on("ask", (...args) => args.pop()(`node:${args[0]}`));
    const fromNode = await node.to(r).timeout(FAST).emitWithAck("ask", "q1");
    assert.deepEqual(fromNode.sort(), ["node:q1", "parley:q1"]);
    const asker = await onParley();
    const rec = new Recorder(asker);
    assert.equal(await ask(asker, "roomAck", { rooms: [r], event: "ask", args: ["q2"], timeout: FAST }), true);
    const [result] = await rec.next("room-ack-result");
    assert.equal(result.err, 0);
    assert.deepEqual(result.responses.map((x) => x[0]).sort(), ["node:q2", "parley:q2"]);
  });

  it("socketsJoin, socketsLeave and disconnectSockets apply on the other node, both ways", T, async () => {
    const r = room();
    const [p, n] = await Promise.all([onParley(), onNode()]);
    await Promise.all([ask(p, "join", r), ask(n, "join", r)]);
    // From Node to Parley's socket.
    node.in(r).socketsJoin(`${r}-joined`);
    await waitUntil(async () => (await ask(p, "rooms")).includes(`${r}-joined`), { what: "joined on Parley" });
    node.in(r).socketsLeave(`${r}-joined`);
    await waitUntil(async () => !(await ask(p, "rooms")).includes(`${r}-joined`), { what: "left on Parley" });
    // From Parley to Node's socket.
    assert.equal(await ask(p, "socketsJoin", { rooms: [r], room: `${r}-p` }), true);
    await waitUntil(async () => (await ask(n, "rooms")).includes(`${r}-p`), { what: "joined on Node" });
    assert.equal(await ask(p, "socketsLeave", { rooms: [r], room: `${r}-p` }), true);
    await waitUntil(async () => !(await ask(n, "rooms")).includes(`${r}-p`), { what: "left on Node" });
    // disconnectSockets both ways.
    const gone = withTimeout(new Promise((resolve) => n.once("disconnect", resolve)), 5000, "Node's socket disconnected");
    const outsider = await onParley();
    assert.equal(await ask(outsider, "disconnectSockets", { rooms: [r], except: [], close: false }), true);
    assert.equal(await gone, "io server disconnect");
    const p2 = await onParley();
    await ask(p2, "join", `${r}-2`);
    const gone2 = withTimeout(new Promise((resolve) => p2.once("disconnect", resolve)), 5000, "Parley's socket disconnected");
    node.in(`${r}-2`).disconnectSockets();
    assert.equal(await gone2, "io server disconnect");
  });

  it("@socket.io/redis-emitter reaches Parley's sockets", { ...T, skip: sharded && "the emitter publishes in classic mode only" }, async () => {
    const r = room();
    const p = await onParley();
    await ask(p, "join", r);
    const rec = new Recorder(p);
    const emitter = new Emitter(emitterClient);
    emitter.to(r).emit("fromEmitter", { n: 1 }, Buffer.from([4, 5]));
    const [obj, buf] = await rec.next("fromEmitter");
    assert.deepEqual(obj, { n: 1 });
    assert.deepEqual([...buf], [4, 5]);
  });
});
