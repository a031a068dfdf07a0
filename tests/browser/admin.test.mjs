// The admin UI of @socket.io/admin-ui 0.5 (its npm package's static build, ui/dist) served
// by parley itself with --admin-ui, in Debian's Chromium: a person opens /admin/, fills the
// connection modal (server URL, user name, password), and the UI shows Parley's server
// (Servers page), the chat's sockets (Sockets page) and their rooms (Rooms page), with the
// numbers the server sent. Two chat clients (socket.io-client in node) are connected in a
// room meanwhile. Screenshots go to tests/artifacts/admin-*.png.
//
// The page asks for its fonts and icons from two CDNs; this machine has no network, so
// those requests are stopped and their failures are the only problems allowed.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import bcrypt from "bcryptjs";
import { io } from "socket.io-client";

import { artifacts, freshArtifacts, launchChromium, pageProblems } from "./chromium.mjs";
import { startServer, waitUntil } from "../integration/lib/server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const UI_DIST = path.resolve(here, "../node_modules/@socket.io/admin-ui/ui/dist");
const PASSWORD = "browser-admin-password";

let srv, browser, page;
const chats = [];
const problems = pageProblems();

async function shot(name) {
  await page.screenshot({ path: path.join(artifacts, `admin-${name}.png`), fullPage: true });
}

// A page of the UI, through its navigation drawer (as a person clicks).
async function nav(title) {
  await page.locator("nav").getByText(title, { exact: true }).click();
}

async function chatClient(name) {
  const r = await fetch(`${srv.url}/api/dev/token`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }) });
  const { token } = await r.json();
  const s = io(srv.url, { forceNew: true, reconnection: false, auth: { token } });
  await new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  });
  const joined = await s.timeout(5000).emitWithAck("joinRoom", { roomId: "lobby" });
  assert.equal(joined.ok, true);
  chats.push(s);
  return s;
}

before(async () => {
  freshArtifacts("admin");
  const hash = bcrypt.hashSync(PASSWORD, 8);
  srv = await startServer("parley", ["--store", "memory", "--dev-login", "--admin", "--admin-username", "admin", "--admin-password-hash", hash, "--admin-server-id", "parley-browser", "--admin-ui", UI_DIST]);
  browser = await launchChromium();
});

after(async () => {
  for (const s of chats) s.disconnect();
  await browser?.close();
  await srv?.stop();
});

afterEach(() => problems.check());

test("the admin UI, served by parley, logs in and shows Parley's server, sockets and rooms", async () => {
  const alice = await chatClient("alice");
  const bob = await chatClient("bob");
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, reducedMotion: "reduce" });
  // Fonts and icons from CDNs: not reachable here, stopped at once.
  await context.route((url) => !url.href.startsWith(srv.url), (route) => route.abort());
  problems.allow("the UI's CDN fonts and icons (no network here)", (p) => (p.kind === "requestfailed" || p.kind === "console") && !p.url.startsWith(srv.url) && !p.text.includes(srv.url));
  page = await context.newPage();
  page.setDefaultTimeout(15000);
  problems.watch(page, "admin");

  // /admin redirects to /admin/, whose relative links load the app.
  const res = await page.goto(`${srv.url}/admin`);
  assert.equal(res.status(), 200);
  assert.equal(new URL(page.url()).pathname, "/admin/");

  // The connection modal: a wrong password first, then the right one.
  await page.getByLabel("Server URL").fill(srv.url);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByText("Invalid credentials").waitFor();
  await shot("login-refused");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByLabel("Password").waitFor({ state: "hidden" });
  // The dashboard: one healthy server, the namespaces with their socket counts.
  await page.getByText(/^\s*healthy\s*$/i).first().waitFor();
  await page.locator("tr", { hasText: "/admin" }).waitFor();
  await shot("dashboard");

  // Servers: Parley's server by its id, healthy, with its host name and pid.
  await nav("Servers");
  const row = page.locator("tr", { hasText: "parley-browser" });
  await row.waitFor();
  assert.match(await row.innerText(), new RegExp(String(srv.process.pid)));
  await shot("servers");

  // Sockets of "/": both chat clients, by id.
  await nav("Sockets");
  for (const s of [alice, bob]) await page.getByText(s.id, { exact: true }).waitFor();
  await shot("sockets");

  // A third client shows up live (socket_connected), and one that leaves goes (socket_disconnected).
  const carol = await chatClient("carol");
  await page.getByText(carol.id, { exact: true }).waitFor();
  const bobId = bob.id;
  bob.disconnect();
  await page.getByText(bobId, { exact: true }).waitFor({ state: "detached" });

  // Rooms: the chat's room, with its members counted.
  await nav("Rooms");
  const lobby = page.locator("tr", { hasText: "lobby" });
  await lobby.waitFor();
  await waitUntil(async () => /\b2\b/.test(await lobby.innerText()), { what: "lobby with 2 sockets" });
  await shot("rooms");

  await context.close();
});
