// Shared by the browser suites: Debian's chromium, launched by playwright-core the same way
// everywhere (headless, no sandbox: tests run as root; nothing reaching out to the network),
// and the screenshot directory, tests/artifacts/ (gitignored).
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

export function launchChromium() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (scripts/deps.sh test)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 20000,
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
