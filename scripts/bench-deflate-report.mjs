// Medians of scripts/bench-deflate.sh's runs (build/bench/deflate.jsonl), as Markdown
// tables on stdout: per broadcast case and server, server CPU per delivery (all and user
// space), bytes per newMessage frame on the wire, the share of deliveries that went
// compressed, delivery p50/p99, lost; then RSS per idle connection.
//   node scripts/bench-deflate-report.mjs RESULTS
// Node's standard library only.
import { readFileSync } from "node:fs";

const recs = readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const SERVERS = ["parley", "parley-deflate", "node", "node-deflate"];
const NAMES = {
  parley: "Parley",
  "parley-deflate": "Parley `--ws-deflate`",
  node: "Node socket.io",
  "node-deflate": "Node socket.io, perMessageDeflate",
};
const median = (xs) => {
  const v = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const results = (c, s) => recs.filter((r) => r.case === c && r.server === s && r.result).map((r) => r.result);
const med = (c, s, f) => median(results(c, s).map(f));
const fmt = (x, d = 0) => (x == null ? "–" : x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }));
const reps = Math.max(0, ...recs.map((r) => r.rep));

const L = [];
L.push(`Medians of ${reps} run(s) per case, each on a fresh server; 1,000 clients, 500 offered deliveries/s.`);
for (const room of [10, 1000]) {
  for (const bytes of [100, 4000]) {
    const c = `broadcast-${room}-${bytes}`;
    if (!recs.some((r) => r.case === c)) continue;
    L.push("");
    L.push(`**Rooms of ${fmt(room)}, ${bytes}-byte texts**`);
    L.push("");
    L.push("| server | CPU µs/delivery | user µs/delivery | wire bytes/delivery | compressed | p50 ms | p99 ms | lost |");
    L.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const s of SERVERS) {
      if (!results(c, s).length) continue;
      const share = med(c, s, (r) => (r.received ? r.compressed_deliveries / Math.max(r.received, 1) : null));
      L.push(`| ${NAMES[s]} | ${fmt(med(c, s, (r) => r.server_cpu_us_per_delivery), 2)} | ` +
        `${fmt(med(c, s, (r) => r.server_user_us_per_delivery), 2)} | ${fmt(med(c, s, (r) => r.wire_bytes_per_delivery))} | ` +
        `${share == null ? "–" : `${fmt(Math.min(share, 1) * 100)}%`} | ${fmt(med(c, s, (r) => r.delivery_ms?.p50), 2)} | ` +
        `${fmt(med(c, s, (r) => r.delivery_ms?.p99), 2)} | ${fmt(med(c, s, (r) => r.lost))} |`);
    }
  }
}
if (recs.some((r) => r.case === "idle")) {
  L.push("");
  L.push("**Idle connections, permessage-deflate negotiated where the server has it on**");
  L.push("");
  L.push("| server | connections | RSS bytes/connection |");
  L.push("| --- | ---: | ---: |");
  for (const s of SERVERS) {
    if (!results("idle", s).length) continue;
    L.push(`| ${NAMES[s]} | ${fmt(med("idle", s, (r) => r.connected))} | ${fmt(med("idle", s, (r) => r.server_bytes_per_conn))} |`);
  }
}
console.log(L.join("\n"));
