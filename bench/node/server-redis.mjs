// bench/node/server-redis.mjs — bench/node/server.mjs as one node of a socket.io cluster
// over Redis (@socket.io/redis-adapter 8, classic mode: PUBLISH / PSUBSCRIBE), for
// scripts/bench-redis.sh: two of these behind nginx against two Parley nodes.
//
// It runs server.mjs itself (no copy of the chat logic): before importing it, the Server
// class's adapter setter is wrapped so that the one Server that server.mjs makes gets
// the Redis adapter instead of the in-memory one. What crosses nodes is then what
// socket.io sends through its adapter: newMessage, userJoined and userLeft to a room.
// What does not: the history and seq counters (server.mjs keeps them in memory, per
// node; parley-bench never reads them back) and the presence counts (per node) — unlike
// Parley's --store redis, which shares one history and seq order per room.
//
// usage: node server-redis.mjs [--redis-url URL] [--port N] [--host H]
//        (or REDIS_URL, default redis://127.0.0.1:6379; the rest as server.mjs).
//        Prints "listening HOST:PORT" once ready (server.mjs does), after Redis is up.
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

// Take --redis-url out of argv: server.mjs parses the rest strictly.
let url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const i = process.argv.indexOf("--redis-url");
if (i > 1) {
  url = process.argv[i + 1];
  process.argv.splice(i, 2);
}

const pub = createClient({ url });
const sub = pub.duplicate();
for (const c of [pub, sub]) c.on("error", (e) => console.error(`redis: ${e.message}`));
await Promise.all([pub.connect(), sub.connect()]);
const redisAdapter = createAdapter(pub, sub);

// Server's constructor calls this.adapter(opts.adapter || Adapter): every Server made
// from here on uses the Redis adapter (server.mjs makes one).
const setAdapter = Server.prototype.adapter;
Server.prototype.adapter = function (...v) {
  return v.length ? setAdapter.call(this, redisAdapter) : setAdapter.call(this);
};

await import("./server.mjs");
