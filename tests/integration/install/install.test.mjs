// The installed library, used as an outside program would: `cmake --install` of the
// build under test into a DESTDIR staging tree, then examples/sio_echo.c copied out of
// the source tree and compiled with nothing but `pkg-config --cflags --libs parley`
// against that tree, then run and driven by the official Socket.IO client.
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { io } from "socket.io-client";

import { buildDir, sanitized, startServer } from "../lib/server.mjs";

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const sourceDir = path.resolve(here, "../../..");
const prefix = "/opt/parley-test"; // as configured; DESTDIR stages it elsewhere

let stage, root, libdir, pcdir, exe;

before(async () => {
  stage = await mkdtemp(path.join(os.tmpdir(), "parley-install-"));
  await run("cmake", ["--install", buildDir, "--prefix", prefix], {
    env: { ...process.env, DESTDIR: stage },
  });
  root = path.join(stage, prefix);
  const pc = (await run("find", [root, "-name", "parley.pc"])).stdout.trim();
  assert.ok(pc, "parley.pc installed");
  pcdir = path.dirname(pc);
  libdir = path.dirname(pcdir);
});

after(async () => {
  if (stage) await rm(stage, { recursive: true, force: true });
});

test("installs the server, both libraries with a versioned soname, the headers and parley.pc", async () => {
  const bin = await readdir(path.join(root, "bin"));
  assert.ok(bin.includes("parley"));
  const libs = await readdir(libdir);
  assert.ok(libs.includes("libparley.a"), libs.join(" "));
  assert.ok(libs.includes("libparley.so"), libs.join(" "));
  assert.ok(libs.some((f) => /^libparley\.so\.\d+$/.test(f)), libs.join(" "));
  assert.ok(libs.some((f) => /^libparley\.so\.\d+\.\d+\.\d+$/.test(f)), libs.join(" "));
  const headers = await readdir(path.join(root, "include", "parley"));
  assert.deepEqual(headers.sort(), ["cluster.h", "eio.h", "http.h", "loop.h", "parley.h", "redis.h", "sio.h", "tls.h"]);
  const share = await readdir(path.join(root, "share", "parley"));
  assert.deepEqual(share.sort(), ["client", "web"]);

  const soname = (await run("objdump", ["-p", path.join(libdir, "libparley.so")])).stdout;
  assert.match(soname, /SONAME\s+libparley\.so\.\d+\b/);
  const version = (await readFile(path.join(sourceDir, "include/parley/parley.h"), "utf8")).match(
    /PARLEY_VERSION_STRING "([^"]+)"/,
  )[1];
  const pcVersion = await run("pkg-config", ["--modversion", "parley"], {
    env: { ...process.env, PKG_CONFIG_PATH: pcdir },
  });
  assert.equal(pcVersion.stdout.trim(), version);
});

test("the shared library exports the public API and nothing from inside", async () => {
  const { stdout } = await run("nm", ["-D", "--defined-only", path.join(libdir, "libparley.so")]);
  const names = stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length === 3 && /^[TDBR]$/.test(f[1]))
    .map((f) => f[2]);
  for (const f of ["sio_server_new", "sio_nsp_emit", "eio_server_new", "http_server_new",
    "http_req_header", "http_static_serve", "net_loop_new", "parley_version", "parley_redis_attach",
    "sio_nsp_fetch_all", "sio_nsp_server_emit"])
    assert.ok(names.includes(f), `${f} exported`);
  const inside = names.filter((n) => /^(net_conn_|ws_|sio_adapter_|eio_session_send$|slice_|buf_|map_|log_|rmsg_|creq_|proto_|wire_)/.test(n));
  assert.deepEqual(inside, [], "internal symbols are not exported");
});

test("a program built outside the tree with pkg-config alone serves the official client", async () => {
  const work = path.join(stage, "app");
  await run("mkdir", ["-p", work]);
  await copyFile(path.join(sourceDir, "examples/sio_echo.c"), path.join(work, "app.c"));
  const env = { ...process.env, PKG_CONFIG_PATH: pcdir };
  const flags = (await run("pkg-config", ["--cflags", "--libs", "parley"], { env })).stdout.trim();
  assert.ok(!flags.includes(sourceDir), `pkg-config points into the source tree: ${flags}`);
  const sanitizer = sanitized ? ["-fsanitize=address,undefined"] : [];
  await run("sh", ["-c", `cc -Wall -Werror ${sanitizer.join(" ")} -o app app.c ${flags}`], {
    cwd: work,
    env,
  });
  const ldd = (await run("ldd", [path.join(work, "app")], { env: { ...env, LD_LIBRARY_PATH: libdir } })).stdout;
  assert.match(ldd, new RegExp(`libparley\\.so\\.\\d+ => ${libdir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));

  const srv = await startServer(path.relative(buildDir, path.join(work, "app")), [], {
    env: { LD_LIBRARY_PATH: libdir },
  });
  const a = io(srv.url, { transports: ["websocket"], forceNew: true });
  const b = io(srv.url, { transports: ["polling"], forceNew: true });
  try {
    await Promise.all([a, b].map((s) => new Promise((r) => s.on("connect", r))));
    assert.deepEqual(await a.timeout(5000).emitWithAck("echo", { n: 1 }, "two"), { n: 1 });
    const got = new Promise((r) => b.on("chat", (...args) => r(args)));
    a.emit("chat", "hello", 42);
    assert.deepEqual(await got, ["hello", 42]);
  } finally {
    a.close();
    b.close();
    await srv.stop();
  }
});
