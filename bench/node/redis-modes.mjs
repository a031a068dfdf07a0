// bench/node/redis-modes.mjs — the driver of scripts/bench-redis-modes.sh: what crosses
// Redis per delivered message when the nodes of a cluster are in one mode of the adapter
// (classic, sharded, sharded-static) and the rooms are laid out over the nodes one way.
//
// Given the nodes' URLs (already up, attached to one Redis, which the script emptied), it
// opens ROOMS × ROOM_SIZE clients, each to the node the layout gives it, and makes each
// join its room (event `join`, room → ack true):
//   local   each room's members all on one node (room r on node r mod N): rooms spread
//           over the nodes, as a balancer sticky by room, or users of one region, give;
//   spread  member j of room r on node (r + j) mod N: with ROOM_SIZE ≥ N every room has
//           members on every node.
// It waits until Redis shows the nodes' subscriptions in place (classic: N connections
// with a pattern subscription; sharded-static: PUBSUB SHARDNUMSUB socket.io#/# = N;
// sharded: that, and each room's channel socket.io#/#<room># subscribed by as many
// nodes as the room has members on), so that no broadcast is published before a
// subscription that would carry it. Then, between two samples of Redis (INFO stats
// commandstats, on a connection of its own) and of every node's GET /stats (.redis:
// published, publishedBytes, received, receivedBytes, unused), member 0 of every room
// sends BROADCASTS broadcasts to its room, one after the other's ack (event `broadcast`
// {event: "m", args: [PAYLOAD bytes of text], rooms: [room]}: the node emits to the room
// through its adapter, sender included); every member counts what it gets. The second
// sample is taken once every expected delivery arrived (or TIMEOUT s passed: the rest is
// reported lost) and the nodes' received counts have stopped moving (the copies a node
// drops arrive at their own pace). The bytes of the script's own INFO exchanges inside
// the window (the first reply, the second request) are taken out.
//
// The clients speak Engine.IO 4 / Socket.IO 5 over WebSocket themselves (`ws`, from
// bench/node/node_modules, which scripts/deps.sh bench installs: socket.io-client is in
// tests/node_modules only), the few packets this needs: open, ping/pong, connect (with
// auth {token}: an HS256 JWT when --jwt-secret is given, for bench/node/server.mjs's
// check; Parley's test server ignores it), events and acks.
//
// Prints one JSON line: the arguments; connected, joined; expected, delivered, lost,
// duplicates, wrong_room (deliveries counted per member, each of its room's broadcasts
// once); broadcasts, acked, refused; room_nodes (Σ over the rooms of the nodes with
// members) and needed (the copies Redis must hand to nodes: per broadcast, the nodes
// with members of the room other than the sender's); subscriptions (what Redis showed
// before the window: connections with a pattern, SHARDNUMSUB of socket.io#/#, Σ of the
// rooms' SHARDNUMSUB); redis {net_in, net_out, calls: {command: calls}} and node_stats
// (per node) / node_total (their sum): the differences over the window; phase durations
// in s (connect_s, join_s, send_s, window_s, elapsed_s); error, if it stopped early.
// Exit status 0 when every client joined, every subscription was in place and every
// delivery arrived, 1 otherwise (the line is printed either way), 2 on a bad command
// line.
//   node redis-modes.mjs --urls http://127.0.0.1:P1,... --redis redis://127.0.0.1:RP
//        --mode classic|sharded|sharded-static --layout local|spread --rooms N
//        [--room-size 10] [--broadcasts 20] [--payload 100] [--timeout 30]
//        [--jwt-secret S] [--concurrency 100]
import { createHmac } from "node:crypto";
import net from "node:net";
import { parseArgs } from "node:util";
import WebSocket from "ws";

let opts;
try {
  opts = parseArgs({
    options: {
      urls: { type: "string" },
      redis: { type: "string", default: "redis://127.0.0.1:6379" },
      mode: { type: "string", default: "classic" },
      layout: { type: "string", default: "local" },
      rooms: { type: "string", default: "200" },
      "room-size": { type: "string", default: "10" },
      broadcasts: { type: "string", default: "20" },
      payload: { type: "string", default: "100" },
      timeout: { type: "string", default: "30" },
      "jwt-secret": { type: "string" },
      concurrency: { type: "string", default: "100" },
    },
  }).values;
} catch (e) {
  console.error(`redis-modes: ${e.message}`);
  process.exit(2);
}
const urls = (opts.urls ?? "").split(",").filter(Boolean);
const N = urls.length;
const ROOMS = Number(opts.rooms), SIZE = Number(opts["room-size"]), B = Number(opts.broadcasts);
const PAYLOAD = Number(opts.payload), TIMEOUT_MS = Number(opts.timeout) * 1000;
const CONCURRENCY = Number(opts.concurrency);
if (!N || !["local", "spread"].includes(opts.layout) || !["classic", "sharded", "sharded-static"].includes(opts.mode) ||
    ![ROOMS, SIZE, B, PAYLOAD, TIMEOUT_MS, CONCURRENCY].every((x) => Number.isInteger(x) && x > 0) || PAYLOAD < 16) {
  console.error("redis-modes: bad arguments (see the header of bench/node/redis-modes.mjs)");
  process.exit(2);
}
const KEY = "socket.io#/#"; // the adapter's channel for namespace "/"
const roomName = (r) => `room-${r}`; // never 20 characters: not taken for a socket id
const nodeOf = (r, j) => (opts.layout === "local" ? r % N : (r + j) % N);
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
const t0 = performance.now();
const since = (t) => Math.round(performance.now() - t) / 1000;

// ---- a JWT for bench/node/server.mjs (HS256, claims sub and name) ----
const b64u = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
function jwt(sub) {
  const secret = opts["jwt-secret"];
  if (!secret) return undefined;
  const head = `${b64u({ alg: "HS256", typ: "JWT" })}.${b64u({ sub, name: sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

// ---- a Socket.IO client over WebSocket: the packets this needs ----
class Client {
  constructor(url, room, token) {
    this.url = `${url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`;
    this.room = room;
    this.token = token;
    this.acks = new Map();
    this.nextAck = 0;
    this.got = new Uint8Array(B); // which of the room's broadcasts arrived
    this.count = 0;
    this.dup = 0;
    this.wrong = 0;
    this.onDelivery = null;
  }

  connect(timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error("connect timed out")), timeoutMs);
      const fail = (e) => {
        clearTimeout(timer);
        this.close();
        reject(e);
      };
      const ws = (this.ws = new WebSocket(this.url, { perMessageDeflate: false }));
      ws.on("error", fail);
      ws.on("close", () => {
        for (const [, a] of this.acks) a.reject(new Error("closed"));
        this.acks.clear();
      });
      ws.on("message", (data) => {
        const s = data.toString();
        if (s[0] === "0") ws.send(this.token ? `40${JSON.stringify({ token: this.token })}` : "40");
        else if (s === "2") ws.send("3");
        else if (s.startsWith("40")) {
          clearTimeout(timer);
          resolve();
        } else if (s.startsWith("44")) fail(new Error(`connect_error ${s.slice(2)}`));
        else if (s.startsWith("42")) this.onEvent(JSON.parse(s.slice(2).replace(/^\d+/, "")));
        else if (s.startsWith("43")) {
          const m = /^43(\d+)(.*)$/s.exec(s);
          const a = m && this.acks.get(Number(m[1]));
          if (a) {
            this.acks.delete(Number(m[1]));
            a.resolve(JSON.parse(m[2]));
          }
        }
      });
    });
  }

  emitAck(event, ...args) {
    return new Promise((resolve, reject) => {
      const id = this.nextAck++;
      this.acks.set(id, { resolve, reject });
      this.ws.send(`42${id}${JSON.stringify([event, ...args])}`);
    });
  }

  // "m" [text]: text starts with "<room>:<seq>:"
  onEvent([event, text]) {
    if (event !== "m" || typeof text !== "string") return;
    const [room, seq] = text.split(":", 2).map(Number);
    if (room !== this.room || !(seq >= 0 && seq < B)) {
      this.wrong++;
      return;
    }
    if (this.got[seq]) {
      this.dup++;
      return;
    }
    this.got[seq] = 1;
    this.count++;
    this.onDelivery?.();
  }

  close() {
    try {
      this.ws?.terminate();
    } catch {}
  }
}

// At most `limit` of fn(item) at once; the outcomes in order, as Promise.allSettled.
async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = { status: "fulfilled", value: await fn(items[i], i) };
      } catch (e) {
        out[i] = { status: "rejected", reason: e };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// ---- Redis: RESP over a connection of our own ----
class Resp {
  constructor(url) {
    const u = new URL(url);
    this.sock = net.connect(Number(u.port || 6379), u.hostname);
    this.buf = Buffer.alloc(0);
    this.waiting = [];
    this.sock.on("data", (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        const r = this.waiting.length ? parse(this.buf, 0) : null;
        if (!r) break;
        const w = this.waiting.shift();
        const bytes = r[1];
        this.buf = this.buf.subarray(bytes);
        w.resolve({ value: r[0], bytes });
      }
    });
    this.sock.on("error", (e) => {
      for (const w of this.waiting) w.reject(e);
      this.waiting = [];
    });
  }

  // The reply and the bytes of the reply; the bytes of the request in .sent.
  command(...args) {
    const req = `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join("");
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve: (r) => resolve({ ...r, sent: Buffer.byteLength(req) }), reject });
      this.sock.write(req);
    });
  }

  close() {
    this.sock.destroy();
  }
}

// One RESP value at b[i]: [value, end] or null when incomplete.
function parse(b, i) {
  const nl = b.indexOf("\r\n", i);
  if (nl < 0) return null;
  const line = b.toString("latin1", i + 1, nl);
  switch (b[i]) {
    case 0x2b: return [line, nl + 2]; // +
    case 0x2d: return [new Error(line), nl + 2]; // -
    case 0x3a: return [Number(line), nl + 2]; // :
    case 0x24: { // $
      const n = Number(line);
      if (n < 0) return [null, nl + 2];
      if (b.length < nl + 2 + n + 2) return null;
      return [b.toString("utf8", nl + 2, nl + 2 + n), nl + 2 + n + 2];
    }
    case 0x2a: { // *
      const n = Number(line);
      const out = [];
      let j = nl + 2;
      for (let k = 0; k < n; k++) {
        const r = parse(b, j);
        if (!r) return null;
        out.push(r[0]);
        j = r[1];
      }
      return [out, j];
    }
    default: throw new Error(`RESP: unexpected ${String.fromCharCode(b[i])}`);
  }
}

const redis = new Resp(opts.redis);

async function info() {
  const r = await redis.command("INFO", "stats", "commandstats");
  const o = { net_in: null, net_out: null, calls: {}, reply_bytes: r.bytes, request_bytes: r.sent };
  for (const line of String(r.value).split("\r\n")) {
    let m;
    if ((m = /^total_net_input_bytes:(\d+)/.exec(line))) o.net_in = Number(m[1]);
    else if ((m = /^total_net_output_bytes:(\d+)/.exec(line))) o.net_out = Number(m[1]);
    else if ((m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line))) o.calls[m[1]] = Number(m[2]);
  }
  return o;
}

async function nodeStats() {
  return Promise.all(urls.map(async (u) => {
    try {
      const res = await fetch(`${u}/stats`, { signal: AbortSignal.timeout(5000) });
      return (await res.json()).redis ?? null;
    } catch {
      return null;
    }
  }));
}

// Every room's channel and how many nodes have members of it (those that joined).
function roomNodes(clients) {
  const nodes = new Map();
  for (const c of clients) {
    if (!c.joined) continue;
    if (!nodes.has(c.room)) nodes.set(c.room, new Set());
    nodes.get(c.room).add(c.node);
  }
  return nodes;
}

// Redis's view of the subscriptions: {pattern, namespace, rooms: [[room, subscribers]]}.
async function subscriptions(rooms) {
  const list = (await redis.command("CLIENT", "LIST")).value;
  const pattern = String(list).split("\n").filter((l) => / psub=[1-9]/.test(l)).length;
  const ns = (await redis.command("PUBSUB", "SHARDNUMSUB", KEY)).value;
  const out = { pattern, namespace: Number(ns[1]), rooms: [] };
  if (rooms.length) {
    const r = (await redis.command("PUBSUB", "SHARDNUMSUB", ...rooms.map((x) => `${KEY}${roomName(x)}#`))).value;
    for (let k = 0; k < rooms.length; k++) out.rooms.push([rooms[k], Number(r[2 * k + 1])]);
  }
  return out;
}

function ready(s, nodes) {
  if (opts.mode === "classic") return s.pattern >= N;
  if (s.namespace < N) return false;
  if (opts.mode === "sharded-static") return true;
  return s.rooms.every(([r, n]) => n >= nodes.get(r).size);
}

const result = {
  mode: opts.mode, layout: opts.layout, nodes: N, rooms: ROOMS, room_size: SIZE, broadcasts_per_room: B,
  payload_bytes: PAYLOAD, clients: ROOMS * SIZE,
};
let clients = [];
let exitCode = 1;
try {
  // ---- connect and join (outside the window) ----
  for (let r = 0; r < ROOMS; r++)
    for (let j = 0; j < SIZE; j++) {
      const node = nodeOf(r, j);
      const c = new Client(urls[node], r, jwt(`u${r}-${j}`));
      c.node = node;
      c.member = j;
      clients.push(c);
    }
  let t = performance.now();
  const conn = await pool(clients, CONCURRENCY, (c) => c.connect(10000));
  result.connect_s = since(t);
  const errors = conn.filter((o) => o.status === "rejected").map((o) => o.reason.message);
  result.connected = conn.length - errors.length;
  if (errors.length) result.connect_errors = [...new Set(errors)].slice(0, 5);
  t = performance.now();
  await pool(clients.filter((c, i) => conn[i].status === "fulfilled"), CONCURRENCY, async (c) => {
    const ack = await Promise.race([c.emitAck("join", roomName(c.room)), sleep(10000).then(() => null)]);
    c.joined = Array.isArray(ack) && ack[0] === true;
  });
  result.join_s = since(t);
  result.joined = clients.filter((c) => c.joined).length;

  const byRoom = roomNodes(clients);
  const senders = [];
  for (let r = 0; r < ROOMS; r++) {
    const s = clients.find((c) => c.room === r && c.joined); // member 0 unless it failed
    if (s) senders.push(s);
  }
  const members = (r) => clients.filter((c) => c.room === r && c.joined).length;
  result.expected = senders.reduce((n, s) => n + members(s.room) * B, 0);
  result.broadcasts = senders.length * B;
  result.room_nodes = [...byRoom.values()].reduce((n, s) => n + s.size, 0); // Σ nodes per room
  // the copies Redis must hand to nodes: each broadcast to every node with members of
  // the room but the sender's own (which delivers to its members itself)
  result.needed = senders.reduce((n, s) => n + (byRoom.get(s.room).size - 1) * B, 0);

  // ---- subscriptions in place ----
  t = performance.now();
  const roomList = [...byRoom.keys()];
  let subs;
  for (;;) {
    subs = await subscriptions(roomList);
    if (ready(subs, byRoom) || performance.now() - t > 10000) break;
    await sleep(50);
  }
  result.subscriptions = {
    ready: ready(subs, byRoom),
    wait_s: since(t),
    pattern: subs.pattern,
    namespace: subs.namespace,
    room_channels: subs.rooms.reduce((n, [, k]) => n + k, 0), // Σ over rooms of SHARDNUMSUB
  };

  // ---- the window ----
  let delivered = 0;
  let allIn;
  const done = new Promise((res) => (allIn = res));
  for (const c of clients) c.onDelivery = () => ++delivered === result.expected && allIn();
  if (result.expected === 0) allIn();
  const before = await nodeStats();
  const a = await info();
  t = performance.now();
  const text = (r, k) => `${r}:${k}:`.padEnd(PAYLOAD, "x");
  let acked = 0, refused = 0;
  const sending = Promise.all(senders.map(async (s) => {
    for (let k = 0; k < B; k++) {
      try {
        const ack = await s.emitAck("broadcast", { event: "m", args: [text(s.room, k)], rooms: [roomName(s.room)] });
        if (Array.isArray(ack) && ack[0] === true) acked++;
        else refused++;
      } catch {
        refused++;
      }
    }
  }));
  const timedOut = await Promise.race([
    Promise.all([sending, done]).then(() => false),
    sleep(TIMEOUT_MS).then(() => true),
  ]);
  result.send_s = since(t);
  result.timed_out = timedOut;
  result.acked = acked;
  result.refused = refused;
  // the nodes' received counts stop moving: 3 equal samples 100 ms apart (at most 3 s)
  let last = null, same = 0, after;
  const settleStart = performance.now();
  for (;;) {
    after = await nodeStats();
    const sum = after.reduce((n, s) => n + (s?.received ?? 0), 0);
    same = sum === last ? same + 1 : 0;
    last = sum;
    if (same >= 2 || performance.now() - settleStart > 3000) break;
    await sleep(100);
  }
  const b = await info();
  result.window_s = since(t);

  result.delivered = clients.reduce((n, c) => n + c.count, 0);
  result.lost = result.expected - result.delivered;
  result.duplicates = clients.reduce((n, c) => n + c.dup, 0);
  result.wrong_room = clients.reduce((n, c) => n + c.wrong, 0);
  const calls = {};
  for (const [k, v] of Object.entries(b.calls)) {
    const d = v - (a.calls[k] ?? 0);
    if (d > 0 && k !== "info") calls[k] = d; // the first sample's INFO is counted in the second
  }
  result.redis = {
    // the first INFO's reply went out, and the second's request came in, inside the window
    net_in: b.net_in - a.net_in - b.request_bytes,
    net_out: b.net_out - a.net_out - a.reply_bytes,
    calls,
  };
  const keys = ["published", "publishedBytes", "received", "receivedBytes", "unused"];
  result.node_stats = after.map((s, i) => (s && before[i] ? Object.fromEntries(keys.map((k) => [k, s[k] - before[i][k]])) : null));
  const total = {};
  for (const k of keys) total[k] = result.node_stats.reduce((n, s) => (s && n != null ? n + s[k] : null), 0);
  result.node_total = total;
  exitCode = result.lost === 0 && !timedOut && result.joined === result.clients && result.subscriptions.ready ? 0 : 1;
} catch (e) {
  result.error = e.message;
} finally {
  result.elapsed_s = since(t0);
  for (const c of clients) c.close();
  redis.close();
}
console.log(JSON.stringify(result));
process.exit(exitCode);
