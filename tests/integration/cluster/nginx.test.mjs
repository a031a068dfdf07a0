// Real nginx, with the documented configuration (docs/deploy/nginx.conf), in front of two
// parley nodes that share a real redis-server (--redis-url, --store redis): websocket and
// long-polling clients through nginx land on both nodes and hear each other; a node killed
// with SIGKILL loses only its own connections, whose clients come back through nginx to
// the other node and find every acknowledged message in the history. Then the same nodes
// behind docs/deploy/nginx-sid.conf (sticky by session id): long-polling clients all from
// one address land on both nodes and every request of a session finds its node.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";

import { Clients, fullHistory, newRoom, newUser, request, startParley, waitUntil } from "../chat/util.mjs";
import { freePort, startRedis } from "../lib/redis.mjs";
import { POLLING, WS } from "../lib/sio.mjs";
import { processExit } from "../lib/server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const T = { timeout: 90000 };

// docs/deploy/nginx.conf with this test's nodes, port and paths; the whole client
// address as the key, since every client here is on 127.0.0.0/24.
function addressSite(nodePorts) {
  let site = fs.readFileSync(path.join(here, "../../../docs/deploy/nginx.conf"), "utf8");
  site = site.replace(/^\s*ip_hash;/m, "    hash $remote_addr consistent;");
  site = site.replace(/^\s*server 127\.0\.0\.1:300\d[^\n]*\n/gm, "");
  site = site.replace("keepalive 64;", `${nodePorts.map((p) => `server 127.0.0.1:${p} max_fails=1 fail_timeout=5s;`).join("\n    ")}\n    keepalive 64;`);
  assert.ok(site.includes("hash $remote_addr consistent") && site.includes(`127.0.0.1:${nodePorts[1]}`), "the documented file changed shape");
  return site;
}

// docs/deploy/nginx-sid.conf with this test's nodes (n1, n2 in order).
function sidSite(nodePorts) {
  let site = fs.readFileSync(path.join(here, "../../../docs/deploy/nginx-sid.conf"), "utf8");
  site = site.replaceAll("127.0.0.1:3001", `127.0.0.1:${nodePorts[0]}`).replaceAll("127.0.0.1:3002", `127.0.0.1:${nodePorts[1]}`);
  assert.ok(site.includes(`127.0.0.1:${nodePorts[1]}`) && site.includes("~n2$"), "the documented file changed shape");
  return site;
}

async function startNginx(site) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-nginx-"));
  fs.chmodSync(dir, 0o777);
  const port = await freePort();
  site = site.replace("listen 80;", `listen 127.0.0.1:${port};`);
  const temps = ["body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `${t === "body" ? "client_body" : t}_temp_path ${dir}/${t};`);
  fs.writeFileSync(
    path.join(dir, "nginx.conf"),
    `worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\nevents { worker_connections 1024; }\nhttp {\n  access_log off;\n  ${temps.join("\n  ")}\n${site}\n}\n`,
  );
  const child = spawn("nginx", ["-p", dir, "-e", `${dir}/error.log`, "-c", `${dir}/nginx.conf`, "-g", "daemon off;"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stderr.on("data", (d) => (out += d));
  const exited = processExit(child);
  await waitUntil(
    async () => {
      if (child.exitCode !== null) throw new Error(`nginx exited: ${out}${fs.readFileSync(`${dir}/error.log`, "utf8")}`);
      return (await request(`http://127.0.0.1:${port}/healthz`).catch(() => ({ status: 0 }))).status === 200;
    },
    { what: "nginx up" },
  );
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      child.kill("SIGQUIT");
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe("nginx in front of two nodes over Redis", () => {
  let redis, nodes, nginx, clients;

  before(async () => {
    redis = await startRedis();
    const args = ["--redis-url", redis.url, "--store", "redis", "--rate-burst", "100"];
    nodes = await Promise.all([startParley(args), startParley(args)]);
    nginx = await startNginx(addressSite(nodes.map((n) => n.port)));
    clients = new Clients(nginx);
  });

  after(async () => {
    clients?.closeAll();
    await nginx?.stop();
    for (const n of nodes ?? []) if (n.process.exitCode === null && n.process.signalCode === null) await n.stop();
    await redis?.stop();
  });

  // A client from its own loopback address (nginx hashes the address to a node).
  async function connectFrom(addr, tr) {
    const opts = { ...tr.opts, reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500, localAddress: addr };
    if (tr === POLLING) opts.agent = new http.Agent({ localAddress: addr });
    return clients.connect(newUser(), opts);
  }

  const sockets = async (node) => JSON.parse((await request(`${node.url}/healthz`)).text).sockets;

  it("clients through nginx land on both nodes, hear each other, and survive a node killed", T, async () => {
    const room = newRoom();
    const all = [];
    for (let i = 2; i < 40 && (all.length < 6 || (await sockets(nodes[0])) === 0 || (await sockets(nodes[1])) === 0); i++) {
      const c = await connectFrom(`127.0.0.${i}`, i % 2 ? POLLING : WS);
      await c.join(room);
      all.push(c);
    }
    assert.ok((await sockets(nodes[0])) > 0 && (await sockets(nodes[1])) > 0, "clients on both nodes");
    const acked = [];
    for (const c of all) acked.push(await c.send(room, `from ${c.userId}`));
    for (const c of all) {
      await c.rec.waitCount("newMessage", acked.length, 10000);
      assert.deepEqual(c.rec.of("newMessage").map((m) => m.seq), acked.map((a) => a.seq).sort((x, y) => x - y));
    }
    // The node with clients of its own dies; the others stay connected.
    const victim = nodes[0];
    assert.ok((await sockets(victim)) > 0);
    const dropped = all.map((c) => new Promise((resolve) => c.s.once("disconnect", () => resolve(c))));
    victim.process.kill("SIGKILL");
    await processExit(victim.process);
    const first = await Promise.race(dropped);
    assert.ok(first, "a client of the killed node noticed");
    // Its clients come back through nginx, to the other node, and rejoin.
    await waitUntil(() => all.every((c) => c.s.connected), { what: "everyone connected again", timeoutMs: 30000, intervalMs: 100 });
    for (const c of all) await c.join(room);
    assert.equal(await sockets(nodes[1]), all.length, "all on the surviving node");
    // Nothing acknowledged is missing, and the room goes on.
    const history = await fullHistory(all[0], room);
    assert.deepEqual(history.map((m) => m.seq), acked.map((a) => a.seq).sort((x, y) => x - y));
    const last = await all.at(-1).send(room, "after the kill");
    for (const c of all) await waitUntil(() => c.rec.of("newMessage").some((m) => m.seq === last.seq), { what: "the last message" });
  });

  it("nginx lets Parley answer oversized bodies itself", T, async () => {
    const r = await request(`${nginx.url}/api/rooms/x/messages`, {
      method: "POST",
      body: "x".repeat(200 * 1024),
      headers: { "content-type": "application/json" },
    });
    assert.ok(r.status >= 400 && r.status < 500, `${r.status}`);
    assert.match(r.headers["content-type"] ?? "", /json/, "Parley's JSON error, not nginx's page");
  });
});

describe("nginx sticky by session id in front of two nodes", () => {
  let redis, nodes, nginx, clients;

  before(async () => {
    redis = await startRedis();
    const args = ["--redis-url", redis.url, "--store", "redis", "--rate-burst", "100"];
    nodes = await Promise.all([startParley([...args, "--node-name", "n1"]), startParley([...args, "--node-name", "n2"])]);
    nginx = await startNginx(sidSite(nodes.map((n) => n.port)));
    clients = new Clients(nginx);
  });

  after(async () => {
    clients?.closeAll();
    await nginx?.stop();
    for (const n of nodes ?? []) await n.stop();
    await redis?.stop();
  });

  const sockets = async (node) => JSON.parse((await request(`${node.url}/healthz`)).text).sockets;

  it("long-polling clients from one address land on both nodes and keep their sessions", T, async () => {
    const room = newRoom();
    const all = [];
    // Long-polling only, and long-polling upgraded to WebSocket (the upgrade carries the sid too).
    for (let i = 0; i < 8; i++) {
      const opts = i % 2 ? POLLING.opts : { transports: ["polling", "websocket"] };
      const c = await clients.connect(newUser(), { ...opts, agent: new http.Agent({ keepAlive: true }) });
      assert.match(c.s.io.engine.id, /n[12]$/, "a session id with its node's name");
      await c.join(room);
      all.push(c);
    }
    const [on1, on2] = [await sockets(nodes[0]), await sockets(nodes[1])];
    assert.ok(on1 > 0 && on2 > 0, `clients on both nodes (${on1}, ${on2}) although all come from 127.0.0.1`);
    assert.equal(on1 + on2, all.length);
    const acked = [];
    for (const c of all) acked.push(await c.send(room, `from ${c.userId}`));
    for (const c of all) {
      await c.rec.waitCount("newMessage", acked.length, 10000);
      assert.deepEqual(c.rec.of("newMessage").map((m) => m.seq), acked.map((a) => a.seq).sort((x, y) => x - y));
    }
    assert.ok(all.every((c) => c.s.connected), "no session lost its node");
  });
});
