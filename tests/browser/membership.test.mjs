// The page's rooms as memberships (docs/MEMBERSHIP.md, "The page"), in Debian's Chromium
// driven by playwright-core against a real parley server (dev login, SQLite store in a
// temporary directory).
//
// Alice has two tabs (two pages of one browser context: one localStorage, one token, two
// connections); Bob posts through socket.io-client. The room list comes from the server's
// myRooms, and both tabs join every membership (joinRooms), also one joined in the other tab;
// unread badges agree in both tabs; viewing a room in one tab (markRead with seq) clears its
// badge in the other (roomRead); a reload with the stored list removed, and a second device
// (a fresh browser context with only the token), come back to the same rooms and badges;
// "Leave room" (leaveRoom {forget}) removes the room in both tabs and for good. Every page
// must stay free of console errors, uncaught exceptions and failed requests
// (chromium.mjs: pageProblems). Screenshots go to tests/artifacts/membership-*.png.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { artifacts, freshArtifacts, launchChromium, pageProblems } from "./chromium.mjs";
import { startServer, waitUntil, sleep } from "../integration/lib/server.mjs";
import { pollUntil } from "../integration/lib/wait.mjs";

let dataDir;
let srv;
let browser;
let context; // Alice's browser: both tabs
let tab1;
let tab2;
let bob; // socket.io-client
let aliceId;
const bobLeft = []; // userLeft events Bob received
const problems = pageProblems();

async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, `membership-${name}.png`) });
}

async function devToken(name) {
  const res = await fetch(srv.url + "/api/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

async function bobSays(roomId, text) {
  const ack = await bob.timeout(5000).emitWithAck("sendMessage", { roomId, text });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return ack.seq;
}

// A page of Alice's (signed in from localStorage) once connected and in every room listed.
async function openTab(ctx, label) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(10000);
  problems.watch(page, label);
  await page.goto(srv.url + "/");
  await page.locator("#chat-view").waitFor({ state: "visible" });
  await waitUntil(() => page.evaluate(() => window.parley.connected), { what: `${label} connected` });
  return page;
}

// The room list as shown: [[room, badge text ("" when none)], ...].
function shownRooms(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll("#room-list .room-item")].map((li) => {
      const badge = li.querySelector(".badge");
      return [li.querySelector(".room-name").textContent.replace(/^# /, ""), badge ? badge.textContent : ""];
    }),
  );
}

function waitRooms(page, want, what) {
  return pollUntil(
    () => shownRooms(page),
    (v) => JSON.stringify(v) === JSON.stringify(want),
    { what, label: "shown" },
  );
}

// Every room listed is joined on this page's connection.
function waitJoined(page, what) {
  return waitUntil(() => page.evaluate(() => window.parley.rooms().length > 0 && window.parley.rooms().every((r) => r.joined)), { what });
}

async function joinByForm(page, room) {
  await page.getByLabel("Join or create a room").fill(room);
  await page.getByLabel("Join or create a room").press("Enter");
  await page.locator("#room-title").filter({ hasText: `# ${room}` }).waitFor();
}

function message(page, text) {
  return page.locator("#messages li.msg").filter({ has: page.locator(".body", { hasText: text }) });
}

before(async () => {
  freshArtifacts("membership");
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-membership-"));
  srv = await startServer("parley", ["--dev-login", "--store", "sqlite", "--data-dir", dataDir]);
  browser = await launchChromium();
  const b = await devToken("Bob");
  bob = io(srv.url, { auth: { token: b.token }, transports: ["websocket"], reconnection: false });
  await new Promise((resolve, reject) => {
    bob.once("connect", resolve);
    bob.once("connect_error", reject);
  });
  bob.on("userLeft", (p) => bobLeft.push(p));
});

after(async () => {
  try {
    if (bob) bob.disconnect();
    if (browser) await browser.close();
  } finally {
    try {
      if (srv) await srv.stop();
    } finally {
      if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }
});

afterEach(() => problems.check());

test("two tabs of one user: the same rooms, and a room joined in one tab joins the other", { timeout: 30000 }, async () => {
  context = await browser.newContext({ viewport: { width: 1100, height: 720 }, reducedMotion: "reduce" });
  tab1 = await context.newPage();
  tab1.setDefaultTimeout(10000);
  problems.watch(tab1, "tab1");
  await tab1.goto(srv.url + "/");
  await tab1.getByLabel("Your name").fill("Alice");
  await tab1.getByRole("button", { name: "Continue" }).click();
  await waitUntil(() => tab1.evaluate(() => window.parley.connected), { what: "tab1 connected" });
  aliceId = await tab1.evaluate(() => window.parley.userId);
  await joinByForm(tab1, "beta");
  await joinByForm(tab1, "alpha");
  // The server's list, in its order (by room id).
  await waitRooms(tab1, [["alpha", ""], ["beta", ""]], "tab1's list sorted as myRooms");

  // The second tab signs in from localStorage and joins both memberships.
  tab2 = await openTab(context, "tab2");
  await waitRooms(tab2, [["alpha", ""], ["beta", ""]], "tab2's list");
  await waitJoined(tab2, "tab2 in both rooms");
  assert.equal(await tab2.evaluate(() => window.parley.userId), aliceId);
  // Both pages count as viewed (the badge rule depends on it).
  for (const p of [tab1, tab2]) assert.equal(await p.evaluate(() => document.visibilityState), "visible");

  // A room joined in tab1 appears in tab2 (myRooms again) and is joined there.
  await joinByForm(tab1, "gamma");
  await waitRooms(tab2, [["alpha", ""], ["beta", ""], ["gamma", ""]], "gamma in tab2");
  await waitJoined(tab2, "tab2 in gamma too");
  // tab2 keeps showing the room it showed.
  assert.equal(await tab2.evaluate(() => window.parley.activeRoom), "alpha");
  await tab2.getByRole("button", { name: "beta", exact: true }).click();
  await tab2.locator("#room-title").filter({ hasText: "# beta" }).waitFor();
});

test("badges agree in both tabs", { timeout: 20000 }, async () => {
  // tab1 shows gamma, tab2 beta; Bob posts in alpha.
  const join = await bob.timeout(5000).emitWithAck("joinRoom", { roomId: "alpha" });
  assert.equal(join.ok, true);
  for (let i = 1; i <= 3; i++) await bobSays("alpha", `alpha ${i}`);
  const want = [["alpha", "3"], ["beta", ""], ["gamma", ""]];
  await waitRooms(tab1, want, "tab1's alpha badge at 3");
  await waitRooms(tab2, want, "tab2's alpha badge at 3");
  for (const p of [tab1, tab2]) {
    await p.getByRole("button", { name: "alpha, 3 unread" }).waitFor();
    assert.equal(await p.title(), "(3) Parley");
  }
  await shot(tab1, "01-badges");
});

test("reading a room in one tab clears its badge in the other", { timeout: 20000 }, async () => {
  await tab2.getByRole("button", { name: "alpha, 3 unread" }).click();
  await message(tab2, "alpha 3").waitFor();
  await waitRooms(tab2, [["alpha", ""], ["beta", ""], ["gamma", ""]], "no badge where alpha is viewed");
  await waitRooms(tab1, [["alpha", ""], ["beta", ""], ["gamma", ""]], "tab1's alpha badge cleared by tab2's read");
  assert.equal(await tab1.title(), "Parley");
  const mark = async (p) => (await p.evaluate(() => window.parley.rooms())).find((r) => r.id === "alpha").lastReadSeq;
  assert.equal(await mark(tab1), 3);

  // While tab2 views alpha, what arrives there is read at once: tab1 ends without a badge.
  await bobSays("alpha", "alpha 4");
  const last = await bobSays("alpha", "alpha 5");
  await message(tab2, "alpha 5").waitFor();
  await waitUntil(async () => (await mark(tab1)) === last, { what: "tab1 told of the read up to alpha 5" });
  await waitRooms(tab1, [["alpha", ""], ["beta", ""], ["gamma", ""]], "tab1 without badges");
});

test("a reload and a second device come back with the same rooms and badges", { timeout: 30000 }, async () => {
  // Both tabs view gamma; Bob posts in alpha and beta.
  await tab2.getByRole("button", { name: "gamma", exact: true }).click();
  await tab2.locator("#room-title").filter({ hasText: "# gamma" }).waitFor();
  const join = await bob.timeout(5000).emitWithAck("joinRoom", { roomId: "beta" });
  assert.equal(join.ok, true);
  await bobSays("alpha", "alpha 6");
  await bobSays("alpha", "alpha 7");
  await bobSays("beta", "beta 1");
  const want = [["alpha", "2"], ["beta", "1"], ["gamma", ""]];
  await waitRooms(tab1, want, "tab1's badges");
  await waitRooms(tab2, want, "tab2's badges");

  // The list kept in localStorage goes: what the reload shows comes from the server.
  await tab2.evaluate(() => localStorage.removeItem("parley.rooms"));
  await tab2.reload();
  await waitUntil(() => tab2.evaluate(() => window.parley.connected), { what: "tab2 connected after the reload" });
  await waitRooms(tab2, want, "tab2's rooms and badges after the reload");
  await waitJoined(tab2, "tab2 in every room after the reload");
  // Joined for real: a new message raises the badge; the room's history is there.
  await bobSays("beta", "beta 2");
  await waitRooms(tab2, [["alpha", "2"], ["beta", "2"], ["gamma", ""]], "beta at 2 after the reload");
  await waitRooms(tab1, [["alpha", "2"], ["beta", "2"], ["gamma", ""]], "beta at 2 in tab1");

  // A second device: another browser profile with only the token.
  const token = await tab1.evaluate(() => localStorage.getItem("parley.token"));
  const device = await browser.newContext({ viewport: { width: 1100, height: 720 }, reducedMotion: "reduce" });
  try {
    await device.addInitScript((t) => {
      if (!localStorage.getItem("parley.token")) localStorage.setItem("parley.token", t);
    }, token);
    const phone = await openTab(device, "device");
    // Nothing was stored there: it shows the first room, so alpha is read (in every tab).
    await waitRooms(phone, [["alpha", ""], ["beta", "2"], ["gamma", ""]], "the device's rooms and badges");
    await waitJoined(phone, "the device in every room");
    assert.equal(await phone.evaluate(() => window.parley.activeRoom), "alpha");
    await message(phone, "alpha 7").waitFor();
    for (const p of [tab1, tab2]) await waitRooms(p, [["alpha", ""], ["beta", "2"], ["gamma", ""]], "alpha read on the device");
  } finally {
    await device.close();
  }

  // Reading beta in tab2 shows its whole history and clears it in tab1.
  await tab2.getByRole("button", { name: "beta, 2 unread" }).click();
  await message(tab2, "beta 2").waitFor();
  assert.deepEqual(await tab2.locator("#messages li.msg .body").allTextContents(), ["beta 1", "beta 2"]);
  await waitRooms(tab1, [["alpha", ""], ["beta", ""], ["gamma", ""]], "tab1 without badges again");
});

test("Leave room removes the room in both tabs, for good", { timeout: 30000 }, async () => {
  await tab1.getByRole("button", { name: "alpha", exact: true }).click();
  await tab1.locator("#room-title").filter({ hasText: "# alpha" }).waitFor();
  const leave = tab1.getByRole("button", { name: "Leave room", exact: true });
  assert.equal(await leave.isVisible(), true);
  await leave.click();
  await waitRooms(tab1, [["beta", ""], ["gamma", ""]], "alpha gone in tab1");
  await waitRooms(tab2, [["beta", ""], ["gamma", ""]], "alpha gone in tab2");
  // tab1 shows another room; the reader's focus stays in the page.
  assert.notEqual(await tab1.evaluate(() => window.parley.activeRoom), "alpha");
  // Neither of Alice's connections is in alpha any more.
  await waitUntil(() => bobLeft.some((p) => p.userId === aliceId && p.roomId === "alpha"), { what: "Bob sees Alice leave alpha" });
  await bobSays("alpha", "after leaving");
  await sleep(300);
  for (const p of [tab1, tab2]) {
    assert.deepEqual(await shownRooms(p), [["beta", ""], ["gamma", ""]]);
    assert.equal(await p.title(), "Parley");
  }
  await shot(tab2, "02-left");

  // For good: a reload does not bring it back.
  await tab2.reload();
  await waitUntil(() => tab2.evaluate(() => window.parley.connected), { what: "tab2 connected after the reload" });
  await waitJoined(tab2, "tab2 in its rooms");
  assert.deepEqual(await shownRooms(tab2), [["beta", ""], ["gamma", ""]]);
  await context.close();
});
