// A real redis-server on a free loopback port, for the cluster suites; stopped by stop().
//
//   const redis = await startRedis();
//   redis.url     "redis://127.0.0.1:PORT"
//   await redis.stop()
//
// Nothing is saved to disk (no RDB, no AOF) unless `args` asks for it.
import { spawn } from "node:child_process";
import net from "node:net";

import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";

import { processExit, redisMode } from "./server.mjs";

// The adapter of a Node.js socket.io node in the suite's mode (PARLEY_TEST_REDIS_MODE):
// createAdapter, or createShardedAdapter in the dynamic or static subscription mode.
export function nodeAdapter(pub, sub) {
  if (redisMode === "classic") return createAdapter(pub, sub);
  return createShardedAdapter(pub, sub, { subscriptionMode: redisMode === "sharded" ? "dynamic" : "static" });
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
