// Shared by the browser suites: Debian's chromium, launched by playwright-core the same way
// everywhere (headless, no sandbox: tests run as root; nothing reaching out to the network).
import fs from "node:fs";
import { chromium } from "playwright-core";

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
