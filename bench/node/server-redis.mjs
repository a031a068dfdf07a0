// bench/node/server-redis.mjs — bench/node/server.mjs as one node of a socket.io cluster
// over Redis (@socket.io/redis-adapter 8), for scripts/bench-redis.sh (two of these
// behind nginx against two Parley nodes, classic mode) and scripts/bench-redis-modes.sh
// (four of these in each mode, beside four Parley nodes).
//
// It runs server.mjs itself (no copy of the chat logic): before importing it, the Server
// class's adapter setter is wrapped so that the one Server that server.mjs makes gets
// the Redis adapter instead of the in-memory one. What crosses nodes is then what
// socket.io sends through its adapter: newMessage, userJoined and userLeft to a room.
// What does not: the history and seq counters (server.mjs keeps them in memory, per
// node; parley-bench never reads them back) and the presence counts (per node) — unlike
// Parley's --store redis, which shares one history and seq order per room.
//
// --redis-mode (REDIS_MODE): classic (createAdapter: PUBLISH / PSUBSCRIBE, the default),
// sharded (createShardedAdapter, subscriptionMode "dynamic": SPUBLISH / SSUBSCRIBE, a
// channel per room subscribed while the room has members here) or sharded-static
// (subscriptionMode "static": one channel per namespace) — Parley's --redis-mode names.
//
// --test-events (for scripts/bench-redis-modes.sh; off otherwise, so that bench-redis.sh
// runs the chat server alone) adds what tests/servers/sio_test_server.c answers and the
// driver bench/node/redis-modes.mjs uses:
//   join      (room, ack) → socket.join(room); ack(true)
//   broadcast ({event, args, rooms}, ack) → io.to(rooms).emit(event, ...args); ack(true)
//   GET /stats → {"redis": {published, publishedBytes, received, receivedBytes, unused}},
//             what this node's link to Redis carried since it started, as Parley's
//             parley_redis_stats: published counts the publishing client's publish and
//             sPublish calls; received every message the subscribed client handed to the
//             adapter (its subscription listeners are wrapped); unused those the adapter
//             dropped (its own, or a room without members here), counted as received −
//             (the in-memory Adapter's broadcasts − this node's own broadcasts), which
//             holds while no request (fetchSockets, serverSideEmit, …) crosses nodes.
// The clients must still pass server.mjs's JWT check (auth.token).
//
// usage: node server-redis.mjs [--redis-url URL] [--redis-mode MODE] [--test-events]
//        [--port N] [--host H] (or REDIS_URL, default redis://127.0.0.1:6379, REDIS_MODE;
//        the rest as server.mjs). Prints "listening HOST:PORT" once ready (server.mjs
//        does), after Redis is up.
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

// Take our options out of argv: server.mjs parses the rest strictly.
function takeOption(name, hasValue) {
  const i = process.argv.indexOf(name);
  if (i < 2) return undefined;
  const v = hasValue ? process.argv[i + 1] : true;
  process.argv.splice(i, hasValue ? 2 : 1);
  return v;
}
const url = takeOption("--redis-url", true) ?? process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const mode = takeOption("--redis-mode", true) ?? process.env.REDIS_MODE ?? "classic";
const testEvents = takeOption("--test-events", false) ?? false;
if (!["classic", "sharded", "sharded-static"].includes(mode)) {
  console.error(`--redis-mode ${mode}: classic, sharded or sharded-static`);
  process.exit(2);
}

const pub = createClient({ url });
const sub = pub.duplicate();
for (const c of [pub, sub]) c.on("error", (e) => console.error(`redis: ${e.message}`));
await Promise.all([pub.connect(), sub.connect()]);

const stats = { published: 0, publishedBytes: 0, received: 0, receivedBytes: 0 };
let ownBroadcasts = 0, localBroadcasts = 0;
if (testEvents) {
  for (const m of ["publish", "sPublish"]) {
    const f = pub[m];
    pub[m] = function (channel, message, ...rest) {
      stats.published++;
      stats.publishedBytes += Buffer.byteLength(message);
      return f.call(this, channel, message, ...rest);
    };
  }
  for (const m of ["subscribe", "pSubscribe", "sSubscribe"]) {
    const f = sub[m];
    sub[m] = function (channels, listener, ...rest) {
      const counted = (message, channel) => {
        stats.received++;
        stats.receivedBytes += message.length;
        return listener(message, channel);
      };
      return f.call(this, channels, counted, ...rest);
    };
  }
}

const redisAdapter =
  mode === "classic"
    ? createAdapter(pub, sub)
    : createShardedAdapter(pub, sub, { subscriptionMode: mode === "sharded" ? "dynamic" : "static" });

// Server's constructor calls this.adapter(opts.adapter || Adapter): every Server made
// from here on uses the Redis adapter (server.mjs makes one).
let io = null;
const setAdapter = Server.prototype.adapter;
Server.prototype.adapter = function (...v) {
  io ??= this;
  return v.length ? setAdapter.call(this, redisAdapter) : setAdapter.call(this);
};

await import("./server.mjs");

if (testEvents) {
  // This node's own broadcasts go through the adapter's broadcast (the instance's method);
  // every broadcast applied here, its own and those from other nodes, through the
  // in-memory Adapter's (the deepest prototype that has one: the subclasses call it with
  // super.broadcast).
  const adapter = io.of("/").adapter;
  let base = Object.getPrototypeOf(adapter), proto = base;
  for (; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto))
    if (Object.hasOwn(proto, "broadcast")) base = proto;
  const applyLocal = base.broadcast;
  base.broadcast = function (...args) {
    localBroadcasts++;
    return applyLocal.apply(this, args);
  };
  const broadcast = adapter.broadcast;
  adapter.broadcast = function (...args) {
    ownBroadcasts++;
    return broadcast.apply(this, args);
  };

  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      socket.join(room);
      if (typeof ack === "function") ack(true);
    });
    socket.on("broadcast", (o, ack) => {
      const ok = o && typeof o.event === "string" && Array.isArray(o.args);
      if (ok) (o.rooms?.length ? io.to(o.rooms) : io).emit(o.event, ...o.args);
      if (typeof ack === "function") ack(!!ok);
    });
  });
  io.httpServer.on("request", (req, res) => {
    if (req.url !== "/stats") return; // socket.io's own listener answers the rest
    const unused = stats.received - (localBroadcasts - ownBroadcasts);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ redis: { ...stats, unused } }));
  });
}
