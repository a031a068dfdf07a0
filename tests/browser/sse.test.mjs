// Server-Sent Events in a real browser (docs/HTTP-API.md): Debian's Chromium, driven by
// playwright-core, opens an EventSource on a parley server (dev login, API key, SQLite
// store in a temporary directory) from a page of that server (same origin: no CORS).
//
// 1. Messages posted over REST (API key) and sent over Socket.IO (socket.io-client here,
//    in Node) arrive in seq order, each with lastEventId == its seq; a Socket.IO user
//    joining the room shows as a userJoined event, which leaves lastEventId as it was.
// 2. The server restarts on the same port and data directory; messages are posted right
//    after the restart, before the browser may reconnect (its /events requests are held
//    off with page.route until then). The EventSource reconnects by itself (retry: 2000)
//    with Last-Event-ID and receives exactly the messages it missed: in order, no
//    duplicate, no gap; then it is live again.
//
// The page must stay free of console errors, uncaught exceptions and failed requests
// (chromium.mjs: pageProblems), except the refused reconnections the restart test provokes.
// A screenshot of what the page received goes to tests/artifacts/sse-*.png (gitignored).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { artifacts, freshArtifacts, launchChromium, pageProblems } from "./chromium.mjs";
import { io } from "socket.io-client";
import { startServer, waitUntil } from "../integration/lib/server.mjs";

const KEY = "browser-sse-api-key-0123456789";
const ROOM = "news";
const EVENTS = `/api/rooms/${ROOM}/events`;

let dataDir;
let srv;
let serverArgs;
let browser;
let context;
let page;
const problems = pageProblems();
const eventRequests = []; // {url, status, lastEventId} of the page's answered /events requests
const sockets = [];
const posted = []; // the messages, as the contract's newMessage objects, in seq order

function log(...a) {
  if (process.env.PARLEY_TEST_VERBOSE) console.log(...a);
}

async function devToken(name) {
  const res = await fetch(srv.url + "/api/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  assert.equal(res.status, 200);
  return res.json(); // {token, userId}
}

async function health() {
  const res = await fetch(srv.url + "/healthz");
  assert.equal(res.status, 200);
  return res.json();
}

// POST over REST with the API key; records and returns the message.
async function postRest(text, user) {
  const res = await fetch(`${srv.url}/api/rooms/${ROOM}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": KEY },
    body: JSON.stringify({ text, ...(user ? { userId: user.userId, username: user.username } : {}) }),
  });
  const body = await res.json();
  assert.equal(res.status, 201, JSON.stringify(body));
  const m = { id: body.id, seq: body.seq, roomId: ROOM, userId: user?.userId ?? "api", username: user?.username ?? "api", text, timestamp: body.timestamp };
  posted.push(m);
  return m;
}

async function connectSocket(name) {
  const { token, userId } = await devToken(name);
  const s = io(srv.url, { auth: { token }, transports: ["websocket"], reconnection: false, forceNew: true });
  sockets.push(s);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("socket.io connect timed out")), 10000);
    s.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    s.once("connect_error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  return { s, userId, name };
}

// What the page received: [{type, data, lastEventId}].
const received = () => page.evaluate(() => window.received);
const messagesIn = (r) => r.filter((e) => e.type === "newMessage");

async function waitMessages(n, what, timeoutMs = 10000) {
  await waitUntil(async () => messagesIn(await received()).length >= n, { timeoutMs, what });
}

before(async () => {
  freshArtifacts("sse");
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-browser-sse-"));
  serverArgs = [
    "--dev-login",
    "--store",
    "sqlite",
    "--data-dir",
    dataDir,
    // Tokens must survive the restart.
    "--jwt-secret",
    "browser-sse-secret-0123456789abcdef",
    "--api-key",
    KEY,
  ];
  srv = await startServer("parley", serverArgs);
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  page = await context.newPage();
  page.setDefaultTimeout(10000);
  problems.watch(page, "page");
  // The /events requests that reached a server (answered), with the Last-Event-ID each
  // carried (null when none).
  page.on("response", async (res) => {
    if (!res.url().includes(EVENTS)) return;
    const entry = { url: res.url(), status: res.status(), lastEventId: undefined };
    eventRequests.push(entry);
    entry.lastEventId = (await res.request().allHeaders())["last-event-id"] ?? null;
  });
});

after(async () => {
  for (const s of sockets) s.disconnect();
  try {
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

test("REST and Socket.IO messages reach an EventSource in seq order; userJoined shows", { timeout: 30000 }, async () => {
  await page.goto(srv.url + "/");
  const viewer = await devToken("Viewer");
  await page.evaluate(
    ({ url }) => {
      window.received = [];
      window.opens = 0;
      window.errors = 0;
      const es = new EventSource(url);
      window.es = es;
      for (const type of ["newMessage", "userJoined", "userLeft", "messagesRead", "message"]) {
        es.addEventListener(type, (e) => window.received.push({ type, data: JSON.parse(e.data), lastEventId: e.lastEventId }));
      }
      es.onopen = () => window.opens++;
      es.onerror = () => window.errors++;
    },
    { url: `${EVENTS}?token=${encodeURIComponent(viewer.token)}` },
  );
  await waitUntil(() => page.evaluate(() => window.opens === 1 && window.es.readyState === 1), { what: "the EventSource open" });
  await waitUntil(async () => (await health()).sseStreams === 1, { what: "the stream registered" });
  // The first connection carries no Last-Event-ID.
  await waitUntil(() => eventRequests.length === 1 && eventRequests[0].lastEventId !== undefined, { what: "the request's headers" });
  assert.deepEqual(eventRequests[0].status, 200);
  assert.equal(eventRequests[0].lastEventId, null);

  const m1 = await postRest("Deploy finished", { userId: "deploy-bot", username: "Deploy bot" });
  await waitMessages(1, "the REST message");
  const sam = await connectSocket("Sam");
  const join = await sam.s.timeout(5000).emitWithAck("joinRoom", { roomId: ROOM });
  assert.equal(join.ok, true, JSON.stringify(join));
  const ack = await sam.s.timeout(5000).emitWithAck("sendMessage", { roomId: ROOM, text: "Hello from socket.io <b>x</b>" });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  const m2 = { id: ack.id, seq: ack.seq, roomId: ROOM, userId: sam.userId, username: "Sam", text: "Hello from socket.io <b>x</b>", timestamp: ack.timestamp };
  posted.push(m2);
  const m3 = await postRest("ünïcødé ✓ and a\nnewline");
  await waitMessages(3, "three messages");

  const r = await received();
  assert.deepEqual(
    r.map((e) => e.type),
    ["newMessage", "userJoined", "newMessage", "newMessage"],
  );
  assert.deepEqual(
    [m1.seq, m2.seq, m3.seq],
    [1, 2, 3],
  );
  assert.deepEqual(r[0], { type: "newMessage", data: m1, lastEventId: "1" });
  // Presence carries no id: the page's last event id stays the last message's.
  assert.deepEqual(r[1], { type: "userJoined", data: { userId: sam.userId, username: "Sam", roomId: ROOM }, lastEventId: "1" });
  assert.deepEqual(r[2], { type: "newMessage", data: m2, lastEventId: "2" });
  assert.deepEqual(r[3], { type: "newMessage", data: m3, lastEventId: "3" });
  assert.equal(await page.evaluate(() => window.errors), 0);
});

test("server restart: the EventSource reconnects with Last-Event-ID and gets exactly what it missed", { timeout: 60000 }, async (t) => {
  const before = messagesIn(await received());
  assert.deepEqual(
    before.map((e) => e.data.seq),
    [1, 2, 3],
  );
  const port = srv.port;
  // While the server is down, and while the route below refuses them, the EventSource's
  // reconnections fail: a failed request to the stream's URL and Chromium's console line
  // about it. Allowed for this test and this URL only.
  t.after(
    problems.allow("the stream's reconnections refused", (p) =>
      (p.kind === "requestfailed" || p.kind === "console") &&
      p.url.includes(EVENTS) &&
      /net::ERR_CONNECTION_REFUSED\b/.test(p.text),
    ),
  );
  // Hold the page's reconnections off until the messages below are stored, so that it
  // can get them only from the replay.
  let held = 0;
  const gate = (route) => {
    held++;
    return route.abort("connectionrefused");
  };
  await page.route(`**${EVENTS}*`, gate);

  // The Socket.IO user leaves first (userLeft, live), then the server stops.
  for (const s of sockets.splice(0)) s.disconnect();
  await waitUntil(async () => (await received()).some((e) => e.type === "userLeft"), { what: "userLeft" });
  await srv.stop();
  srv = null;
  // The stream ended: the EventSource is reconnecting (readyState CONNECTING), not closed.
  await waitUntil(() => page.evaluate(() => window.errors >= 1 && window.es.readyState === 0), {
    what: "the EventSource reconnecting",
  });

  srv = await startServer("parley", [...serverArgs, "--port", String(port)]);
  assert.equal(srv.port, port);
  const missed = [];
  for (const text of ["after restart 1", "after restart 2", "after restart 3"]) missed.push(await postRest(text));
  assert.deepEqual(
    missed.map((m) => m.seq),
    [4, 5, 6],
  );
  assert.equal((await health()).sseStreams, 0, "the page has not reconnected yet");
  // At least one attempt was refused meanwhile (the EventSource retries every 2 s): the
  // page must keep trying after a failed reconnection.
  await waitUntil(() => held >= 1, { timeoutMs: 10000, what: "a reconnection attempt held off" });
  await page.unroute(`**${EVENTS}*`, gate);
  log(`reconnection attempts held off: ${held}`);

  await waitMessages(6, "the missed messages", 20000);
  await waitUntil(() => page.evaluate(() => window.es.readyState === 1), { what: "the EventSource open again" });
  await waitUntil(async () => (await health()).sseStreams === 1, { what: "the stream registered again" });
  // One reconnection reached the server, to the same URL, with the last id the page had.
  await waitUntil(() => eventRequests.length === 2 && eventRequests[1].lastEventId !== undefined, { what: "the reconnection's headers" });
  assert.deepEqual(eventRequests[1], { url: eventRequests[0].url, status: 200, lastEventId: "3" });

  // Live again.
  await postRest("live after the restart");
  await waitMessages(7, "the live message");

  const r = await received();
  const msgs = messagesIn(r);
  assert.deepEqual(
    msgs.map((e) => e.data),
    posted,
    "every message once, in seq order",
  );
  assert.deepEqual(
    msgs.map((e) => e.lastEventId),
    posted.map((m) => String(m.seq)),
  );
  // Besides the messages, only the Socket.IO user's arrival and departure (presence is
  // live only: not replayed).
  assert.deepEqual(
    r.filter((e) => e.type !== "newMessage").map((e) => e.type),
    ["userJoined", "userLeft"],
  );
  assert.deepEqual(r.find((e) => e.type === "userLeft"), {
    type: "userLeft",
    data: r.find((e) => e.type === "userJoined").data,
    lastEventId: "3",
  });
  assert.equal(await page.evaluate(() => window.opens), 2);

  // A record of what the page received, for people.
  await page.evaluate(() => {
    const pre = document.createElement("pre");
    pre.id = "sse-log";
    pre.style.cssText =
      "position:fixed;inset:0;margin:0;padding:16px;background:#fff;color:#111;font:13px/1.5 monospace;white-space:pre-wrap;word-break:break-all;z-index:99999;overflow:auto";
    pre.textContent = `EventSource ${window.es.url.replace(/token=[^&]+/, "token=…")}\n\n${window.received
      .map((e) => `${e.type.padEnd(11)} lastEventId=${e.lastEventId}  ${JSON.stringify(e.data)}`)
      .join("\n")}`;
    document.body.appendChild(pre);
  });
  await page.screenshot({ path: path.join(artifacts, "sse-01-received.png") });
});
