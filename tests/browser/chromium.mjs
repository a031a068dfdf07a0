// Shared by the browser suites: Debian's chromium, launched by playwright-core the same way
// everywhere (headless, no sandbox: tests run as root; nothing reaching out to the network),
// the screenshot directory, tests/artifacts/ (gitignored), and the watch on what a page must
// never show: console errors, uncaught exceptions, failed requests, HTTP errors.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const artifacts = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../artifacts");

// Makes the directory and removes a suite's screenshots of an earlier run (<prefix>-*.png).
export function freshArtifacts(prefix) {
  fs.mkdirSync(artifacts, { recursive: true });
  for (const f of fs.readdirSync(artifacts)) {
    if (f.startsWith(`${prefix}-`) && f.endsWith(".png")) fs.rmSync(path.join(artifacts, f), { force: true });
  }
}

export const CHROMIUM = process.env.PARLEY_CHROMIUM || "/usr/bin/chromium";

// env: the browser's environment, when not the tests' (HOME holds its certificate store).
export function launchChromium({ env } = {}) {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (scripts/deps.sh test)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 20000,
    ...(env ? { env } : {}),
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

// What a page of ours must not produce: a console message of type "error" (this includes
// Chromium's own "Failed to load resource" lines), an uncaught exception, a request that
// failed, or a response with a status >= 400. (A missing /favicon.ico shows only as such a
// console line: Playwright reports no request or response for the browser's favicon fetch.)
//
//   const problems = pageProblems();
//   problems.watch(page, "Alice");           // every page the suite opens
//   afterEach(() => problems.check());       // fails the test that saw any, then clears
//   const done = problems.allow("why", (p) => p.label === "Bob" && p.url.includes("/x"));
//   ...; done();                             // a test that provokes some on purpose
//
// A problem is {label, kind, text, url}; kind is "console", "pageerror", "requestfailed" or
// "response"; url is the request's (for a console line, where Chromium says it came from).
// Allowed problems are only logged (PARLEY_TEST_VERBOSE=1), never counted.
export function pageProblems() {
  const found = [];
  const allowances = [];
  const verbose = !!process.env.PARLEY_TEST_VERBOSE;

  function report(p) {
    const line = `${p.label}: ${p.kind}: ${p.text}`;
    const a = allowances.find((x) => x.match(p));
    if (a) {
      if (verbose) console.log(`[allowed: ${a.why}] ${line}`);
      return;
    }
    found.push(line);
  }

  return {
    watch(page, label) {
      page.on("console", (m) => {
        if (m.type() !== "error") return;
        const url = m.location().url || "";
        report({ label, kind: "console", text: url ? `${m.text()} (${url})` : m.text(), url });
      });
      page.on("pageerror", (e) => report({ label, kind: "pageerror", text: e.stack || e.message, url: "" }));
      page.on("requestfailed", (r) => {
        const why = r.failure() ? r.failure().errorText : "failed";
        report({ label, kind: "requestfailed", text: `${r.method()} ${r.url()} ${why}`, url: r.url() });
      });
      page.on("response", (r) => {
        if (r.status() < 400) return;
        report({ label, kind: "response", text: `${r.request().method()} ${r.url()} ${r.status()}`, url: r.url() });
      });
    },
    // Tolerates the problems match() accepts until the returned function is called.
    allow(why, match) {
      const a = { why, match };
      allowances.push(a);
      return () => {
        const i = allowances.indexOf(a);
        if (i >= 0) allowances.splice(i, 1);
      };
    },
    // Throws if a problem was seen since the last check; clears the list either way.
    check() {
      const list = found.splice(0);
      assert.deepEqual(list, [], `the pages showed errors:\n${list.join("\n")}`);
    },
  };
}
