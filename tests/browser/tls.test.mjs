// The web page over https (--tls-cert): Debian's Chromium trusts a test CA the way a user's
// browser would, through its certificate store (an NSS database in the browser's own HOME,
// filled with certutil), with no flag that turns certificate checks off. The page loads,
// logs in, and chats over wss; an EventSource on the HTTP API streams over TLS too. The
// page must stay free of console errors and failed requests (chromium.mjs: pageProblems).
// Screenshot: tests/artifacts/tls-01-chat.png (gitignored).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { artifacts, freshArtifacts, launchChromium, pageProblems } from "./chromium.mjs";
import { makePki } from "../integration/lib/pki.mjs";
import { startServer, waitUntil } from "../integration/lib/server.mjs";

let dir, srv, browser;
const problems = pageProblems();

before(async () => {
  freshArtifacts("tls");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-browser-tls-"));
  const pki = makePki(dir, ["site"]);
  const home = path.join(dir, "home");
  const nssdb = path.join(home, ".pki", "nssdb");
  fs.mkdirSync(nssdb, { recursive: true });
  execFileSync("certutil", ["-N", "-d", `sql:${nssdb}`, "--empty-password"], { stdio: "pipe" });
  execFileSync("certutil", ["-A", "-d", `sql:${nssdb}`, "-t", "C,,", "-n", "Parley test CA", "-i", pki.caFile], { stdio: "pipe" });
  srv = await startServer("parley", ["--dev-login", "--store", "memory", "--jwt-secret", "browser-tls-secret-0123456789", "--tls-cert", path.join(dir, "site.pem"), "--tls-key", path.join(dir, "site.key")]);
  browser = await launchChromium({ env: { ...process.env, HOME: home } });
});

after(async () => {
  await browser?.close();
  await srv?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("the chat page over https and wss, with the CA in the browser's store", async () => {
  const origin = `https://localhost:${srv.port}`;
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, reducedMotion: "reduce" });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  problems.watch(page, "Alice");
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  const res = await page.goto(origin + "/");
  assert.equal(res.status(), 200);
  const security = await res.securityDetails();
  assert.equal(security.subjectName, "parley-site");
  assert.match(security.protocol, /TLS 1\.[23]/);
  await page.getByLabel("Your name").fill("Alice");
  await page.getByRole("button", { name: "Continue" }).click();
  await page.locator("#chat-view").waitFor({ state: "visible" });
  await waitUntil(() => page.evaluate(() => window.parley && window.parley.connected), { what: "connected" });
  // The page connects over polling first and upgrades: the WebSocket may come a moment later.
  await waitUntil(() => sockets.some((u) => u.startsWith(`wss://localhost:${srv.port}/socket.io/`)), { what: "a wss connection" });

  // An EventSource on the room, over TLS, sees the message the page sends.
  const room = "secure";
  await page.getByLabel("Join or create a room").fill(room);
  await page.getByLabel("Join or create a room").press("Enter");
  await page.locator("#room-title").filter({ hasText: `# ${room}` }).waitFor();
  await page.evaluate((r) => {
    window.sseSeen = [];
    const token = JSON.parse(localStorage.getItem("parley.token"));
    const es = new EventSource(`/api/rooms/${r}/events?token=${encodeURIComponent(token)}`);
    es.addEventListener("newMessage", (e) => window.sseSeen.push(JSON.parse(e.data).text));
    window.sse = es;
  }, room);
  await waitUntil(() => page.evaluate(() => window.sse.readyState === 1), { what: "EventSource open" });
  await page.locator("#composer-input").fill("Hello over TLS");
  await page.locator("#composer-input").press("Enter");
  await page.locator("#messages li.msg .body", { hasText: "Hello over TLS" }).waitFor();
  await waitUntil(() => page.evaluate(() => window.sseSeen.includes("Hello over TLS")), { what: "the SSE stream got the message" });
  await page.screenshot({ path: path.join(artifacts, "tls-01-chat.png") });
  await context.close();
  problems.check();
});
