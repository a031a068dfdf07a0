// A real redis-server on a free loopback port, for the cluster suites; stopped by stop().
//
//   const redis = await startRedis();
//   redis.url     "redis://127.0.0.1:PORT"
//   await redis.stop()
//
// Nothing is saved to disk (no RDB, no AOF) unless `args` asks for it.
import { spawn } from "node:child_process";
import net from "node:net";

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient, createCluster } from "redis";

import { processExit, redisMode } from "./server.mjs";

// The adapter of a Node.js socket.io node in the suite's mode (PARLEY_TEST_REDIS_MODE):
// createAdapter, or createShardedAdapter in the dynamic or static subscription mode
// ("cluster": dynamic, over a Redis Cluster).
export function nodeAdapter(pub, sub) {
  if (redisMode === "classic") return createAdapter(pub, sub);
  return createShardedAdapter(pub, sub, { subscriptionMode: redisMode === "sharded-static" ? "static" : "dynamic" });
}

// The Redis the suite's mode runs on: one redis-server, or in the "cluster" mode a Redis
// Cluster of three masters (url: one of them, the seed).
export async function startRedisForSuite() {
  return redisMode === "cluster" ? startRedisCluster(3) : startRedis();
}

// A node-redis client of that Redis (a cluster client in the "cluster" mode).
export function redisClient(url) {
  return redisMode === "cluster" ? createCluster({ rootNodes: [{ url }] }) : createClient({ url });
}

// PUBSUB SHARDNUMSUB of one channel: on a cluster, asked of the master that owns it.
export async function shardNumSub(client, channel) {
  const args = ["PUBSUB", "SHARDNUMSUB", channel];
  const reply = redisMode === "cluster" ? await client.sendCommand(channel, true, args) : await client.sendCommand(args);
  return Number(reply[1]);
}

// A Redis Cluster of n masters without replicas on free loopback ports, created with
// redis-cli --cluster create; stop() stops every server and removes their files.
export async function startRedisCluster(n) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-redis-cluster-"));
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      servers.push(await startRedis(["--cluster-enabled", "yes", "--cluster-config-file", `nodes-${i}.conf`, "--dir", dir]));
    }
    const create = spawn("redis-cli", ["--cluster", "create", ...servers.map((s) => `127.0.0.1:${s.port}`), "--cluster-replicas", "0", "--cluster-yes"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    create.stdout.on("data", (d) => (out += d));
    create.stderr.on("data", (d) => (out += d));
    const { code } = await processExit(create);
    if (code !== 0) throw new Error(`redis-cli --cluster create failed:\n${out}`);
    // Every node must know the whole map before clients ask any of them.
    const deadline = Date.now() + 20000;
    for (const s of servers) {
      const c = createClient({ url: s.url });
      await c.connect();
      try {
        while (!/cluster_state:ok/.test(await c.sendCommand(["CLUSTER", "INFO"]))) {
          if (Date.now() > deadline) throw new Error("the Redis Cluster did not become ready");
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      } finally {
        await c.quit();
      }
    }
  } catch (e) {
    await Promise.all(servers.map((s) => s.stop()));
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    port: servers[0].port,
    url: servers[0].url,
    servers,
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// A loopback port nobody listens on (for servers told which port to take).
export async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

// port: the one to listen on (a restart of a stopped server), else a free one.
export async function startRedis(args = [], { port: wanted } = {}) {
  const port = wanted ?? (await freePort());
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = processExit(child);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${out}`)), 10000);
    const check = () => {
      if (/Ready to accept connections/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", check);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited early (${code ?? signal}):\n${out}`));
    });
  });
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    process: child,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
