// The "nodes over Redis" section of docs/BENCHMARKS.md from build/bench/redis.jsonl
// (scripts/bench-redis.sh: one record per run, parley-bench's JSON line in "result" and
// the script's own samples of Redis and nginx at both ends of the window in "side") and
// build/bench/redis-meta.json: the broadcast ladder per server with the CPU per delivery
// of the nodes, Redis and nginx, the highest load within the limit, and Redis's traffic
// (bytes, commands, publications) per chat message and per delivery.
//   node scripts/bench-redis-report.mjs RESULTS DOC [META]
// The section lies between the redis markers; what follows "<!-- redis:reading -->" inside
// it is written by hand and kept as it is. Whether a run stayed within the limit is the
// record's "within", decided by scripts/bench-report.mjs line when it was made. Node's
// standard library only.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { cpuModel, minsec, startedAt, writeSection } from "./bench-doc.mjs";

const BEGIN = "<!-- redis:begin -->";
const P99_LIMIT = 100; // ms, as scripts/bench-report.mjs
const ORDER = ["parley", "parley-redis1", "parley-redis2", "node-redis2"];
const NAMES = {
  parley: "Parley, 1 node, no Redis",
  "parley-redis1": "Parley, 1 node over Redis",
  "parley-redis2": "Parley, 2 nodes over Redis",
  "node-redis2": "Node socket.io, 2 nodes over Redis",
};
// Commands the script itself sends to Redis inside the window (its samples).
const OWN = new Set(["info", "client|list", "pubsub|numsub"]);

const [resultsPath, docPath, metaPath] = process.argv.slice(2);
const recs = readFileSync(resultsPath, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const meta = metaPath && existsSync(metaPath) ? JSON.parse(readFileSync(metaPath, "utf8")) : {};
const reps = meta.reps ?? Math.max(1, ...recs.map((r) => r.rep));
const roomSize = meta.room_size ?? 10;
const servers = ORDER.filter((s) => recs.some((r) => r.server === s));

const median = (xs) => {
  const v = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const fmt = (x, d = 0) => (x == null ? "–" : x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }));
const fms = (v) => (v == null ? "–" : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0));
const ratio = (a, b) => (a == null || b == null || b === 0 ? "–" : `${(a / b).toFixed(2)}×`);

// The side figures of one run over the script's own window (start → end samples): the
// window's deliveries and messages at the rates parley-bench measured over its window
// (the two windows are the same steady load, offset by a few ms).
function side(rec) {
  const r = rec.result, s = rec.side;
  if (!r || !s?.start || !s?.end || !r.deliveries_per_s) return null;
  const a = s.start, b = s.end, dt = b.t - a.t;
  const deliveries = r.deliveries_per_s * dt;
  const messages = (r.sent / r.window_s) * dt;
  const out = { dt, deliveries, messages };
  if (rec.server === "parley") return Object.assign(out, { nginx_us: 0, redis_us: 0 }); // neither in its path
  out.nginx_us = a.nginx_ticks != null && b.nginx_ticks != null ? (((b.nginx_ticks - a.nginx_ticks) / s.clk_tck) * 1e6) / deliveries : 0;
  if (a.redis && b.redis) {
    const calls = {};
    for (const [k, v] of Object.entries(b.redis.calls)) {
      const d = v - (a.redis.calls[k] ?? 0);
      if (d > 0 && !OWN.has(k)) calls[k] = d;
    }
    const own = Object.keys(b.redis.calls).filter((k) => OWN.has(k)).reduce((n, k) => n + b.redis.calls[k] - (a.redis.calls[k] ?? 0), 0);
    const publish = calls.publish ?? 0;
    // a publication goes to every connection subscribed to its channel: the chat's
    // (Parley: chat:messages) or the adapter's pattern (Node: socket.io#/#*)
    const hearers = rec.server.startsWith("parley") ? s.chat_subscribers : s.pattern_subscribers;
    Object.assign(out, {
      redis_us: ((b.redis.cpu_s - a.redis.cpu_s) * 1e6) / deliveries,
      bytes_in: b.redis.net_in - a.redis.net_in,
      bytes_out: b.redis.net_out - a.redis.net_out - (a.redis.info_bytes ?? 0),
      commands: b.redis.commands - a.redis.commands - own,
      calls,
      publish,
      pubsub_out: publish * hearers,
      hearers,
    });
  } else {
    Object.assign(out, { redis_us: 0 });
  }
  return out;
}

const runs = (s, l) => recs.filter((r) => r.server === s && (l == null || r.load === l));
const loads = (s) => [...new Set(runs(s).map((r) => r.load))].sort((a, b) => a - b);
const allLoads = [...new Set(recs.map((r) => r.load))].sort((a, b) => a - b);
const get = (o, p) => p.split(".").reduce((v, k) => (v == null ? v : v[k]), o);
const med = (s, l, f) => median(runs(s, l).map((r) => get(r.result, f)));
const medSide = (s, l, f) => median(runs(s, l).map((r) => { const x = side(r); return x ? f(x, r) : null; }));
const total = (x, r) => (r.result.server_cpu_us_per_delivery ?? NaN) + x.redis_us + x.nginx_us;
const within = (s, l) => runs(s, l).filter((r) => r.within && r.result);
const passes = (s, l) => within(s, l).length * 2 > reps;
function best(s) {
  let b = null;
  for (const l of loads(s)) {
    if (!passes(s, l)) continue;
    const w = within(s, l);
    b = {
      load: l,
      dps: median(w.map((r) => r.result.deliveries_per_s)),
      nodes: median(w.map((r) => r.result.server_cpu_us_per_delivery)),
      total: median(w.map((r) => { const x = side(r); return x ? total(x, r) : null; })),
    };
  }
  return b;
}

function version(cmd, args, re) {
  try {
    const out = execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return re.exec(out)?.[1] ?? "?";
  } catch {
    return "?";
  }
}
const nodeDir = path.dirname(meta.node_server ?? "bench/node/server-redis.mjs");
const pkgVersion = (p) => {
  try {
    return JSON.parse(readFileSync(path.join(nodeDir, "node_modules", p, "package.json"), "utf8")).version;
  } catch {
    return "?";
  }
};
const model = cpuModel();
const when = startedAt(meta);
const command = `${meta.quick ? "QUICK=1 " : ""}scripts/bench-redis.sh`;
const cmdOf = (s) => runs(s)[0]?.server_cmd?.replace(/^\S*\/parley /, "build/parley ");

const L = [];
L.push(BEGIN);
L.push("## Nodes over Redis: 2 Parley nodes vs 1, and vs 2 Node.js socket.io nodes (classic mode)");
L.push("");
L.push(`Generated by \`${command}\` (part of \`make bench\`; scripts/bench-redis-report.mjs) on ${when} UTC in ` +
  `${minsec(meta.elapsed_s)}: ${os.cpus().length} cores (${model}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ` +
  `load average ${meta.loadavg_start ?? "?"} at the start, ${meta.loadavg_end ?? "?"} at the end (shared machine); ` +
  `Parley ${meta.parley ?? "?"}, Redis ${meta.redis ?? "?"}, nginx ${meta.nginx ?? "?"}, Node.js ${process.version}, ` +
  `socket.io ${pkgVersion("socket.io")}, @socket.io/redis-adapter ${pkgVersion("@socket.io/redis-adapter")}, ` +
  `redis (the Node client) ${pkgVersion("redis")}; medians of ${reps} repetition(s), each run on fresh server ` +
  "processes (Redis stays up, emptied before each run: FLUSHALL, CONFIG RESETSTAT). Raw results: `build/bench/redis.jsonl`.");
L.push("");
L.push("**Classic mode** (PUBLISH / PSUBSCRIBE, every node hears every publication). Sharded mode's Redis traffic " +
  "(SPUBLISH / SSUBSCRIBE, one channel per room) is measured in the next section.");
L.push("");
L.push("What runs. The broadcast ladder of the main section: 10,000 clients in 1,000 rooms of 10, one sender per " +
  "room, 100-byte chat messages (`sendMessage`; every member, sender included, gets `newMessage`), `--rate` = offered " +
  "deliveries/s ÷ 10,000; each server climbs in each repetition until a run is past the limit (p99 > 100 ms, more " +
  "than 0.1% lost, or the bench saturated). The servers:");
L.push("");
L.push("- *Parley, 1 node, no Redis*: `--store memory`, the clients connected to it directly (the main section's single process).");
L.push("- *Parley, 1 node / 2 nodes over Redis*: `--redis-url` and `--store redis`, behind nginx. parley-bench's " +
  "clients send chat messages, and with `--store memory` (or sqlite) a node announces a message to its own clients only " +
  "(docs/CLUSTER.md), so the members on the other node would never get it. With `--store redis` a message is one " +
  "Lua script in Redis (INCR, ZADD, HSET, trim, PUBLISH on `chat:messages`), and every node announces every message " +
  "to its own members.");
L.push("- *Node socket.io, 2 nodes over Redis*: bench/node/server-redis.mjs, which runs bench/node/server.mjs (the " +
  "reference server of the main section) with @socket.io/redis-adapter: `io.to(room).emit(\"newMessage\")` is one " +
  "PUBLISH on `socket.io#/#<room>#`, PSUBSCRIBEd by every node. Its history and seq counters stay per node (parley-bench " +
  "does not read them); Parley's are shared.");
L.push("- nginx (2 workers, `random` balancing, WebSocket upgrades passed through) in front of the nodes of the last " +
  "three: parley-bench connects to one port and names its rooms per process, so two parley-bench processes (one per " +
  "node) could not share rooms, and Parley's SO_REUSEPORT is for its own workers only. Each connection lands on " +
  "either node at random: a room of 10 has members on both nodes but for 2 in 1,024, so nearly every message crosses " +
  "Redis to reach some of its members. The 1-node-over-Redis row goes through the same nginx and store, so it " +
  "differs from the 2-node row only by the second node.");
L.push("");
L.push("CPU per delivery is split: *nodes* is what parley-bench measures for the node processes (`--server-pid`, all " +
  "their threads) over its window ÷ deliveries; *Redis* (INFO used_cpu) and *nginx* (its processes, /proc) are sampled " +
  "by the script at both ends of a window 0.15 s inside parley-bench's (it notices parley-bench's “ready” line; GO " +
  "follows 100 ms later, then the warm-up) and divided by that window's deliveries at parley-bench's rate. Everything, load generator " +
  "(2 processes) included, shares the machine's 2 cores: these figures are costs per delivery and a ceiling on one " +
  "machine, not the throughput of a cluster of machines.");
L.push("");
L.push("```sh");
L.push("redis-server --port RPORT --bind 127.0.0.1 --save '' --appendonly no");
for (const s of servers) {
  const c = cmdOf(s);
  if (!c) continue;
  const n = s === "parley" ? "" : `   # ×${s.slice(-1)} (${NAMES[s]})`;
  L.push(`${c}${n}`);
}
if (servers.some((s) => s !== "parley"))
  L.push("nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'   # upstream nodes { random; server 127.0.0.1:NODE_PORT; … }, listen reuseport, proxy_http_version 1.1, Upgrade/Connection headers (scripts/bench-redis.sh writes it)");
const benchCmd = (recs.find((r) => r.server !== "parley" && !r.server.startsWith("node")) ?? recs[0])?.cmd;
if (benchCmd)
  L.push(`${benchCmd.replace(/--rate \S+/, `--rate LOAD/${meta.clients ?? 10000}`)}   # Node: --connect-rate 2000; PORT: nginx's, or the node's for 1 node without Redis; PIDS: the nodes'`);
L.push("```");
L.push("");
L.push(`### Deliveries/s within p99 ≤ ${P99_LIMIT} ms, and CPU per delivery`);
L.push("");
L.push(`Runs: of the ${reps} repetitions, how many ran this load and, in brackets, how many stayed within the limit; ` +
  `medians over the runs made. A load counts as reached when more than half of the ${reps} repetitions stayed within it. ` +
  "“total” is nodes + Redis + nginx.");
L.push("");
L.push("| offered/s | server | runs (within) | deliveries/s | p50 ms | p99 ms | p99.9 ms | lost | CPU µs/delivery: nodes (user) | Redis | nginx | total | bench saturated |");
L.push("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const l of allLoads) {
  for (const s of servers) {
    const rs = runs(s, l);
    if (!rs.length) continue;
    const ok = rs.filter((r) => r.result);
    const sat = ok.filter((r) => r.result.bench_saturated).length;
    const hasRedis = s !== "parley";
    L.push(`| ${fmt(l)} | ${NAMES[s]} | ${ok.length} (${within(s, l).length}) | ${fmt(med(s, l, "deliveries_per_s"))} | ` +
      `${fms(med(s, l, "delivery_ms.p50"))} | ${fms(med(s, l, "delivery_ms.p99"))} | ${fms(med(s, l, "delivery_ms.p999"))} | ` +
      `${fmt(med(s, l, "lost"))} | ${fmt(med(s, l, "server_cpu_us_per_delivery"), 2)} (${fmt(med(s, l, "server_user_us_per_delivery"), 2)}) | ` +
      `${hasRedis ? fmt(medSide(s, l, (x) => x.redis_us), 2) : "–"} | ${hasRedis ? fmt(medSide(s, l, (x) => x.nginx_us), 2) : "–"} | ` +
      `${fmt(medSide(s, l, total), 2)} | ${sat ? `${sat}/${ok.length}` : "no"} |`);
  }
}
L.push("");
L.push(`Highest load within the limit (p99 ≤ ${P99_LIMIT} ms, ≤ 0.1% lost, bench not saturated, in most repetitions): ` +
  servers.map((s) => {
    const b = best(s);
    return b ? `${NAMES[s]} ${fmt(b.dps)} deliveries/s (offered ${fmt(b.load)}; CPU ${fmt(b.total, 2)} µs/delivery in all, ${fmt(b.nodes, 2)} in the nodes)`
      : `${NAMES[s]}: none`;
  }).join("; ") + ".");
const short = servers.map((s) => [s, median(runs(s).map((r) => r.result?.connected))]).filter(([, c]) => c != null && c < (meta.clients ?? 10000));
if (short.length)
  L.push("Not every client connected: " + short.map(([s, c]) => `${NAMES[s]} ${fmt(c)} of ${fmt(meta.clients ?? 10000)} (median over its runs; the others' handshakes timed out, 30 s after the last was due)`).join("; ") +
    ". Its runs went on with the clients that did, so a room had 9 or 10 members.");
L.push("");

// At each load every compared server ran: the ratios of CPU per delivery.
const pairs = [
  ["parley-redis2", "parley", "Parley 2 nodes over Redis ÷ 1 node without (all CPU)", total],
  ["parley-redis2", "parley-redis1", "Parley 2 nodes ÷ 1 node, both over Redis behind nginx (all CPU)", total],
  ["node-redis2", "parley-redis2", "Node 2 nodes ÷ Parley 2 nodes (all CPU)", total],
  ["node-redis2", "parley-redis2", "Node 2 nodes ÷ Parley 2 nodes (the nodes' CPU only)", null],
].filter(([a, b]) => servers.includes(a) && servers.includes(b));
if (pairs.length) {
  L.push("CPU per delivery side by side, at each load both ran (medians; rows past the limit compare queues, not costs):");
  L.push("");
  L.push(`| comparison | ${allLoads.map((l) => `${fmt(l)}/s`).join(" | ")} |`);
  L.push(`| --- | ${allLoads.map(() => "---:").join(" | ")} |`);
  for (const [a, b, label, f] of pairs) {
    const v = (s, l) => (f ? medSide(s, l, (x, r) => (s === "parley" ? r.result.server_cpu_us_per_delivery : f(x, r))) : med(s, l, "server_cpu_us_per_delivery"));
    L.push(`| ${label} | ${allLoads.map((l) => (runs(a, l).length && runs(b, l).length ? `${fmt(v(a, l), 1)} ÷ ${fmt(v(b, l), 1)} = ${ratio(v(a, l), v(b, l))}` : "–")).join(" | ")} |`);
  }
  L.push("");
}

const redisServers = servers.filter((s) => s !== "parley");
if (redisServers.length) {
  L.push("### Redis traffic per message, classic mode, rooms spread over the nodes");
  L.push("");
  L.push(`Counted by Redis (INFO: total_net_input_bytes, total_net_output_bytes, commandstats) over the window, divided ` +
    `by the chat messages sent in it (each has ${roomSize} deliveries) and by its deliveries; medians over every run of ` +
    "the ladder at that load that stayed within the limit (past it, a node's queue grows and Redis runs at a rate " +
    "other than the clients' sends). " +
    "Commands include those a Lua script runs (Redis counts them); “pub/sub out” is the publications × the connections " +
    "subscribed to their channel (Parley: `PUBSUB NUMSUB chat:messages`; Node: the connections with a pattern " +
    "subscription), as Redis 7.0 does not count the messages it pushes. The script's own INFO samples are left out.");
  L.push("");
  L.push("| offered/s | server | runs | messages/s | commands per message | PUBLISH per message | pub/sub out per message | bytes in per message | bytes out per message | Redis bytes per delivery (in + out) | Redis CPU µs per message | Redis CPU, % of a core |");
  L.push("| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const l of allLoads) {
    for (const s of redisServers) {
      const w = within(s, l);
      if (!w.length) continue;
      const m = (f) => median(w.map((r) => { const x = side(r); return x && x.bytes_in != null ? f(x) : null; }));
      // the commands per message, by name (medians of each)
      const names = new Set();
      for (const r of w) for (const k of Object.keys(side(r)?.calls ?? {})) names.add(k);
      const per = [...names].map((k) => [k, m((x) => (x.calls[k] ?? 0) / x.messages)]).filter(([, v]) => v >= 0.005)
        .sort((a, b) => b[1] - a[1]);
      const calls = per.map(([k, v]) => `${k.toUpperCase()} ${v.toFixed(2)}`).join(", ");
      L.push(`| ${fmt(l)} | ${NAMES[s]} | ${w.length} | ${fmt(m((x) => x.messages / x.dt))} | ${fmt(m((x) => x.commands / x.messages), 2)}` +
        `${calls ? ` (${calls})` : ""} | ${fmt(m((x) => x.publish / x.messages), 2)} | ${fmt(m((x) => x.pubsub_out / x.messages), 2)} | ` +
        `${fmt(m((x) => x.bytes_in / x.messages))} | ${fmt(m((x) => x.bytes_out / x.messages))} | ` +
        `${fmt(m((x) => (x.bytes_in + x.bytes_out) / x.deliveries))} | ${fmt(m((x) => (x.redis_us * x.deliveries) / x.messages), 1)} | ` +
        `${fmt(m((x) => (x.redis_us * x.deliveries) / x.dt / 1e4), 1)} |`);
    }
  }
  L.push("");
}

// The hand-written reading is kept from the document as it was.
writeSection(docPath, "redis", L);
console.log(`bench-redis: wrote ${docPath}`);
