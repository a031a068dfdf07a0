// Configuration (src/main/, docs/CONFIG.md): a --config JSON file, the environment and
// flags, in that order of strength; files that name no option, give a wrong type or are
// not JSON are refused at start; and docs/CONFIG.md lists exactly the flags that
// `parley --help` lists.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, test } from "node:test";

import { buildDir, processExit } from "../lib/server.mjs";
import { request, rmTemp, startParley, tempDir } from "./util.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = tempDir("config");
const file = (name, content) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, typeof content === "string" ? content : JSON.stringify(content));
  return p;
};

// Whether key opens POST /api/emit (401 for a wrong key).
async function keyWorks(srv, key) {
  const r = await request(`${srv.url}/api/emit`, {
    method: "POST",
    headers: { "x-api-key": key, "content-type": "application/json" },
    body: JSON.stringify({ event: "hello" }),
  });
  return r.status === 200;
}

describe("configuration", () => {
  after(() => rmTemp(dir));

  test("the file's options apply; the environment beats the file; flags beat both", async () => {
    const conf = file("parley.json", { "api-key": "from-file", "rate-burst": 2, recovery: false, "log-format": "json", store: "memory" });
    let srv = await startParley(["--config", conf]);
    try {
      assert.ok(await keyWorks(srv, "from-file"));
      assert.ok(!(await keyWorks(srv, "other")));
      const lines = srv.stderr().trim().split("\n");
      for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), line);
    } finally {
      await srv.stop();
    }
    srv = await startParley([], { env: { PARLEY_CONFIG: conf, PARLEY_API_KEY: "from-env" } });
    try {
      assert.ok(await keyWorks(srv, "from-env"), "the environment wins over the file");
      assert.ok(!(await keyWorks(srv, "from-file")));
    } finally {
      await srv.stop();
    }
    srv = await startParley(["--config", conf, "--api-key", "from-flag"], { env: { PARLEY_API_KEY: "from-env" } });
    try {
      assert.ok(await keyWorks(srv, "from-flag"), "the flag wins over both");
    } finally {
      await srv.stop();
    }
  });

  test("a bad file is refused at start, with the reason", async () => {
    const cases = [
      [file("typo.json", { "rate-brust": 2 }), /rate-brust: no such option/],
      [file("type.json", { "rate-burst": "two" }), /rate-burst: a value of the wrong type/],
      [file("range.json", { port: 70000 }), /port: a value of the wrong type or out of range/],
      [file("text.json", "port = 3000"), /--config .*text\.json/],
      [file("array.json", [1]), /not a JSON object/],
      [path.join(dir, "missing.json"), /--config .*missing\.json/],
    ];
    for (const [conf, why] of cases) {
      const child = spawn(path.join(buildDir, "parley"), ["--port", "0", "--config", conf], { stdio: ["ignore", "ignore", "pipe"] });
      let err = "";
      child.stderr.on("data", (d) => (err += d));
      const timer = setTimeout(() => child.kill("SIGKILL"), 10000); // it must not start
      const { code } = await processExit(child);
      clearTimeout(timer);
      assert.equal(code, 2, `${conf}: ${err}`);
      assert.match(err, why);
    }
  });

  test("--notify-url: refused without a secret or an http(s) URL; with both, the notifier is in /metrics and drains", async () => {
    const refused = [
      [["--notify-url", "http://127.0.0.1:9/hook"], {}, /--notify-url needs --notify-secret/],
      [["--notify-url", "ftp://127.0.0.1/hook", "--notify-secret", "s"], {}, /http:\/\/ or https:\/\//],
      [["--notify-url", "http://127.0.0.1:9/hook"], { PARLEY_NOTIFY_SECRET: "" }, /--notify-url needs --notify-secret/],
    ];
    for (const [args, env, why] of refused) {
      const child = spawn(path.join(buildDir, "parley"), ["--port", "0", "--store", "memory", ...args], {
        stdio: ["ignore", "ignore", "pipe"],
        env: { ...process.env, ...env },
      });
      let err = "";
      child.stderr.on("data", (d) => (err += d));
      const timer = setTimeout(() => child.kill("SIGKILL"), 10000); // it must not start
      const { code } = await processExit(child);
      clearTimeout(timer);
      assert.equal(code, 2, `${args.join(" ")}: ${err}`);
      assert.match(err, why);
    }
    // The secret from the environment, as --jwt-secret's may be.
    const srv = await startParley(["--store", "memory", "--notify-url", "http://127.0.0.1:9/hook", "--notify-queue", "50"], {
      env: { PARLEY_NOTIFY_SECRET: "from-env" },
    });
    try {
      const { text } = await request(`${srv.url}/metrics`);
      assert.match(text, /^parley_notify_queue 0$/m);
      assert.match(text, /^parley_notify_sent_total 0$/m);
      assert.match(text, /^parley_notify_failed_total\{reason="rejected"\} 0$/m);
      assert.match(text, /^parley_notify_latency_seconds_count 0$/m);
    } finally {
      await srv.stop();
    }
  });

  test("docs/CONFIG.md lists the flags of parley --help", () => {
    const help = spawnSync(path.join(buildDir, "parley"), ["--help"], { encoding: "utf8" }).stdout;
    const flags = (text, re) => [...text.matchAll(re)].map((m) => m[1]).sort();
    const fromHelp = flags(help, /^ {2}(--[a-z0-9-]+)/gm);
    const doc = fs.readFileSync(path.join(here, "../../../docs/CONFIG.md"), "utf8");
    const fromDoc = flags(doc, /^\| `(--[a-z0-9-]+)/gm);
    assert.ok(fromHelp.length > 30);
    assert.deepEqual(fromDoc, fromHelp);
  });
});
