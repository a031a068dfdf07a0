// bench/node/tls.mjs — the load generator of scripts/bench-tls.sh (issue 14): what TLS
// costs a server, the same client code against Parley and the Node.js socket.io
// reference server (bench/node/server.mjs), each over plain TCP and over TLS. The
// server's RSS and CPU are read from /proc/PID, as parley-bench (tools/bench) does.
//
//   idle       open N Socket.IO connections over WebSocket (ws:// or wss://: Engine.IO v4
//              open, then a Socket.IO CONNECT with an HS256 JWT in auth.token, as
//              parley-bench's idle scenario: handshake done, no room joined), at most C
//              handshakes in flight, pings answered; then hold them. Server RSS (VmRSS)
//              before the first connection, right after the last one's CONNECT ack
//              ("active": TLS record buffers may still be held) and after --hold s of
//              silence ("idle"), each minus the first, divided by the connections held.
//   handshake  M fresh connections, at most C at a time, each a TCP (+ TLS) handshake,
//              an Engine.IO polling handshake (GET /socket.io/?EIO=4&transport=polling,
//              answered `0{"sid":...}`), then closed by the client; after a warm-up of
//              50 not counted. Server CPU (utime + stime from /proc/PID/stat) per
//              handshake, handshakes/s over the wall time, latency percentiles, and the
//              load generator's own CPU (near 100% of a core: it is the limit). For TLS,
//              every handshake is a full one unless --resume: then each connection
//              offers the latest session ticket the server sent (TLS 1.3 PSK resumption,
//              still with an ECDHE exchange).
//
// usage: node tls.mjs idle --url URL --pid PID --clients N [--hold S] [--concurrency C]
//                         [--ca FILE] --jwt-secret SECRET [--timeout S]
//        node tls.mjs handshake --url URL --pid PID --count M [--concurrency C]
//                         [--ca FILE] [--resume] [--timeout S]
// URL: http://127.0.0.1:PORT or https://127.0.0.1:PORT (the certificate must name
// 127.0.0.1; --ca: the PEM that signed it). Prints progress on stderr and one JSON line
// on stdout. Bounded: past --timeout s (default 120) it reports what it has and exits.
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { parseArgs } from "node:util";
import WebSocket from "ws";

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string" },
    pid: { type: "string" },
    clients: { type: "string", default: "2000" },
    count: { type: "string", default: "3000" },
    hold: { type: "string", default: "5" },
    concurrency: { type: "string", default: "32" },
    ca: { type: "string" },
    resume: { type: "boolean", default: false },
    "jwt-secret": { type: "string" },
    timeout: { type: "string", default: "120" },
  },
});
const mode = positionals[0];
if (!["idle", "handshake"].includes(mode) || !a.url || !a.pid) {
  console.error("usage: node tls.mjs idle|handshake --url URL --pid PID [options] (see the file's head)");
  process.exit(2);
}
const url = new URL(a.url);
const secure = url.protocol === "https:";
const host = url.hostname, port = Number(url.port);
const pid = Number(a.pid);
const concurrency = Number(a.concurrency);
const ca = a.ca ? readFileSync(a.ca) : undefined;
const deadline = Date.now() + Number(a.timeout) * 1000;
const CLK_TCK = 100; // getconf CLK_TCK on Linux

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...m) => console.error(`tls.mjs ${mode}:`, ...m);

function rssKb() {
  const m = /VmRSS:\s*(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

// utime + stime of the server process, in clock ticks (fields 14 and 15).
function cpuTicks() {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] : null;
}

// What the client negotiated, from a connected TLS socket.
function tlsInfo(sock) {
  if (!sock || !secure) return null;
  const k = sock.getEphemeralKeyInfo?.() ?? {};
  const peer = sock.getPeerCertificate?.() ?? {};
  return {
    protocol: sock.getProtocol(),
    cipher: sock.getCipher()?.name,
    group: k.name ?? k.type ?? null,
    cert_key: peer.asn1Curve ?? (peer.bits ? `RSA ${peer.bits}` : null),
  };
}

// ---- idle ----

function jwt(secret, sub) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, name: sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

// One Socket.IO connection over WebSocket; resolves with the ws once CONNECT is acked.
function sioConnect(i, secret) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${secure ? "wss" : "ws"}://${host}:${port}/socket.io/?EIO=4&transport=websocket`, {
      ca,
      perMessageDeflate: false,
      handshakeTimeout: 30000,
    });
    let done = false;
    const fail = (e) => {
      if (done) return;
      done = true;
      ws.terminate();
      reject(e);
    };
    ws.on("error", fail);
    ws.on("close", () => fail(new Error("closed during the handshake")));
    ws.on("message", (data) => {
      const m = data.toString();
      if (m === "2") return ws.send("3"); // Engine.IO ping → pong, before and after
      if (done) return;
      if (m.startsWith("0{")) ws.send(`40${JSON.stringify({ token: jwt(secret, `u${i}`) })}`);
      else if (m.startsWith("40")) {
        done = true;
        ws.removeAllListeners("close");
        ws.on("close", () => (ws.lost = true));
        resolve(ws);
      } else if (m.startsWith("44")) fail(new Error(`connect_error ${m.slice(2, 200)}`));
    });
  });
}

async function idle() {
  const n = Number(a.clients), hold = Number(a.hold) * 1000;
  if (!a["jwt-secret"]) throw new Error("idle needs --jwt-secret");
  const rss0 = rssKb(), cpu0 = cpuTicks(), t0 = Date.now();
  const socks = [], errors = [];
  let next = 0, info = null;
  async function lane() {
    while (next < n && Date.now() < deadline) {
      const i = next++;
      try {
        const ws = await sioConnect(i, a["jwt-secret"]);
        socks.push(ws);
        info ??= tlsInfo(ws._socket);
      } catch (e) {
        errors.push(String(e.message ?? e));
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane));
  const tReady = Date.now(), cpuReady = cpuTicks();
  const rssActive = rssKb();
  log(`${socks.length}/${n} connected in ${tReady - t0} ms; RSS ${rss0} -> ${rssActive} KiB`);
  const samples = [];
  while (Date.now() - tReady < hold && Date.now() < deadline) {
    await sleep(500);
    samples.push(rssKb());
  }
  const rssIdle = rssKb(), cpuIdle = cpuTicks();
  const held = socks.filter((w) => !w.lost && w.readyState === WebSocket.OPEN).length;
  for (const w of socks) w.terminate();
  const per = (kb) => (held ? ((kb - rss0) * 1024) / held : null);
  return {
    mode, url: a.url, tls: secure, clients: n, held, errors: errors.length,
    first_error: errors[0] ?? null, connect_ms: tReady - t0, hold_s: (Date.now() - tReady) / 1000,
    rss_before_kb: rss0, rss_active_kb: rssActive, rss_idle_kb: rssIdle, rss_samples_kb: samples,
    bytes_per_conn_active: per(rssActive), bytes_per_conn_idle: per(rssIdle),
    server_cpu_ms_per_connect: held ? ((cpuReady - cpu0) * 1000) / CLK_TCK / held : null,
    server_cpu_ms_idle: ((cpuIdle - cpuReady) * 1000) / CLK_TCK,
    tls_info: info,
  };
}

// ---- handshake ----

const REQUEST = `GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: ${host}:${port}\r\nAccept: */*\r\n\r\n`;

// One connection: connect (+ TLS), the polling handshake, close. Resolves with
// { ms, reused, sock }.
function pollHandshake(session, onSession) {
  return new Promise((resolve, reject) => {
    const t = process.hrtime.bigint();
    // noDelay: without it the request, written right after the client's Finished, waits
    // for the server's delayed ACK (Nagle): 40 ms a handshake.
    const opts = { host, port, ca, session, noDelay: true, ALPNProtocols: ["http/1.1"] };
    const sock = secure ? tls.connect(opts) : net.connect(opts);
    let buf = Buffer.alloc(0), body = -1, need = -1, done = false;
    const timer = setTimeout(() => fail(new Error("no answer in 30 s")), 30000);
    const fail = (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    if (secure && onSession) sock.on("session", onSession);
    sock.on("error", fail);
    sock.on("close", () => fail(new Error("closed before the answer")));
    sock.once(secure ? "secureConnect" : "connect", () => sock.write(REQUEST));
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      if (need < 0) {
        const h = buf.indexOf("\r\n\r\n");
        if (h < 0) return;
        const head = buf.subarray(0, h).toString("latin1");
        if (!/^HTTP\/1\.1 200 /.test(head)) return fail(new Error(head.split("\r\n")[0]));
        const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        if (!cl) return fail(new Error("no Content-Length"));
        body = h + 4;
        need = body + Number(cl[1]);
      }
      if (buf.length < need) return;
      if (!buf.subarray(body, body + 2).equals(Buffer.from("0{")))
        return fail(new Error("not an Engine.IO open packet"));
      done = true;
      clearTimeout(timer);
      const reused = secure ? sock.isSessionReused() : false;
      const info = tlsInfo(sock);
      sock.destroy();
      resolve({ ms: Number(process.hrtime.bigint() - t) / 1e6, reused, info });
    });
  });
}

async function handshake() {
  const m = Number(a.count);
  let session; // the latest ticket, offered by the next connections (--resume)
  const onSession = a.resume ? (s) => (session = s) : null;
  async function batch(count, lat, errors) {
    let next = 0, reused = 0, info = null;
    async function lane() {
      while (next < count && Date.now() < deadline) {
        next++;
        try {
          const r = await pollHandshake(a.resume ? session : undefined, onSession);
          lat.push(r.ms);
          if (r.reused) reused++;
          info ??= r.info;
        } catch (e) {
          errors.push(String(e.message ?? e));
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
    return { reused, info };
  }
  await batch(50, [], []); // warm-up: lazy initialisation on both sides, a first ticket
  const lat = [], errors = [];
  const cpu0 = cpuTicks(), c0 = process.cpuUsage(), t0 = process.hrtime.bigint();
  const { reused, info } = await batch(m, lat, errors);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu1 = cpuTicks(), c1 = process.cpuUsage(c0);
  lat.sort((x, y) => x - y);
  const ok = lat.length;
  const clientMs = (c1.user + c1.system) / 1000;
  return {
    mode, url: a.url, tls: secure, resume: a.resume, count: m, ok, errors: errors.length,
    first_error: errors[0] ?? null, resumed: reused, wall_s: wall,
    handshakes_per_s: ok / wall,
    server_cpu_ms_per_handshake: ok ? ((cpu1 - cpu0) * 1000) / CLK_TCK / ok : null,
    server_cpu_pct: (((cpu1 - cpu0) / CLK_TCK) / wall) * 100,
    client_cpu_ms_per_handshake: ok ? clientMs / ok : null,
    client_cpu_pct: (clientMs / 1000 / wall) * 100,
    p50_ms: pct(lat, 50), p99_ms: pct(lat, 99), concurrency, tls_info: info,
  };
}

const result = await (mode === "idle" ? idle() : handshake());
console.log(JSON.stringify(result));
process.exit(0);
