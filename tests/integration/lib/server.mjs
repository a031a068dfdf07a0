// Starts a Parley binary from the build under test on a free loopback port, and stops it.
//
//   const srv = await startServer("eio_echo", ["--ping-interval", "300"]);
//   srv.url        "http://127.0.0.1:PORT"
//   srv.port
//   srv.stderr()   everything it logged so far
//   await srv.stop()   SIGTERM, waits for exit, and throws unless it exited 0 with no
//                      sanitizer report (LeakSanitizer included, in the ASan build)
//
// The binary is looked up in PARLEY_BUILD_DIR (set by ctest), else ../../../build.
// It must print "listening <host>:<port>" on stdout once it accepts connections.
// PARLEY_TEST_REDIS_MODE=sharded (or sharded-static) runs every node started with
// --redis-url in that mode (ctest registers the Redis suites again so); "cluster" in the
// sharded mode over a Redis Cluster (--redis-cluster).
// waitUntil and sleep (./wait.mjs) are re-exported here for the suites that import them
// with the server (tests/browser).
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export { waitUntil, sleep } from "./wait.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const buildDir = process.env.PARLEY_BUILD_DIR || path.resolve(here, "../../../build");
export const sanitized = process.env.PARLEY_SANITIZE === "1";

export const redisMode = process.env.PARLEY_TEST_REDIS_MODE || "classic";

export async function startServer(name, args = [], { env = {}, timeoutMs = 10000 } = {}) {
  const bin = path.join(buildDir, name);
  if (args.includes("--redis-url") && !args.includes("--redis-mode") && redisMode !== "classic") {
    args = [...args, ...(redisMode === "cluster" ? ["--redis-mode", "sharded", "--redis-cluster"] : ["--redis-mode", redisMode])];
  }
  const child = spawn(bin, ["--port", "0", ...args], {
    env: {
      ...process.env,
      ASAN_OPTIONS: "detect_leaks=1:abort_on_error=0:exitcode=23",
      UBSAN_OPTIONS: "print_stacktrace=1:halt_on_error=1:exitcode=24",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const exited = processExit(child);
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${stderr}`)), timeoutMs);
    child.stdout.on("data", (d) => {
      stdout += d;
      const m = /listening [^\s:]+:(\d+)/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited early (${code ?? signal}):\n${stderr}`));
    });
  });
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    process: child,
    stderr: () => stderr,
    async stop({ signal = "SIGTERM", timeoutMs: stopMs = 15000 } = {}) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), stopMs);
      const { code, signal: sig } = await exited;
      clearTimeout(timer);
      if (code !== 0 || /Sanitizer|runtime error:/.test(stderr)) {
        throw new Error(`${name} ended with ${code ?? sig}:\n${stderr.slice(-20000)}`);
      }
    },
  };
}

// Resolves once a child process has exited, with {code, signal} (for servers killed with
// SIGKILL, whose stop() would throw).
export function processExit(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}
