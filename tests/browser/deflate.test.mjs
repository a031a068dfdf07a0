// permessage-deflate with a real browser: Debian's Chromium (which always offers the
// extension) against parley --ws-deflate, through the Socket.IO client bundle the chat page
// loads, over WebSocket only. Chromium compresses what it sends; the server compresses its
// long messages. A long chat message goes from the browser to a Node socket.io-client and
// back, intact both ways, and /metrics shows compressed traffic in both directions: the
// browser's frames inflated, the server's deflated.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { launchChromium, pageProblems } from "./chromium.mjs";
import { io } from "socket.io-client";
import { startServer } from "../integration/lib/server.mjs";

let srv;
let browser;
const problems = pageProblems();

async function devToken(name) {
  const res = await fetch(srv.url + "/api/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

async function counter(name) {
  const text = await (await fetch(srv.url + "/metrics")).text();
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

before(async () => {
  srv = await startServer("parley", ["--dev-login", "--store", "memory", "--ws-deflate"]);
  browser = await launchChromium();
});

after(async () => {
  try {
    if (browser) await browser.close();
  } finally {
    if (srv) await srv.stop();
  }
});

afterEach(() => problems.check());

test("Chromium and parley --ws-deflate: long messages both ways, compressed both ways", { timeout: 30000 }, async () => {
  const room = `deflate-${process.pid}`;
  const long = Array.from({ length: 300 }, (_, i) => `chromium${i % 13}`).join(" ");
  const reply = Array.from({ length: 300 }, (_, i) => `node${i % 11}`).join(" ");
  assert.ok(long.length > 2000 && long.length < 4000 && reply.length > 1500);

  const bob = await devToken("Bob");
  const node = io(srv.url, { transports: ["websocket"], auth: { token: bob.token }, reconnection: false, forceNew: true });
  await new Promise((resolve, reject) => {
    node.once("connect", resolve);
    node.once("connect_error", reject);
  });
  const joined = await node.timeout(5000).emitWithAck("joinRoom", { roomId: room });
  assert.equal(joined.ok, true);
  const nodeGot = [];
  node.on("newMessage", (m) => nodeGot.push(m.text));

  const inflatedBefore = await counter("parley_ws_inflate_messages_total");
  const framesBefore = await counter("parley_ws_deflate_frames_total");

  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  problems.watch(page, "chromium");
  // The page asks the Node client to answer once its own message is acknowledged.
  await page.exposeFunction("__sendReply", async () => (await node.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: reply })).ok);
  await page.goto(srv.url + "/");
  await page.waitForFunction(() => typeof window.io === "function");
  const alice = await devToken("Alice");
  const result = await page.evaluate(
    async ({ token, room, long, reply }) => {
      const s = io({ transports: ["websocket"], auth: { token }, reconnection: false, forceNew: true });
      await new Promise((resolve, reject) => {
        s.once("connect", resolve);
        s.once("connect_error", (e) => reject(new Error(e.message)));
      });
      const got = [];
      const replied = new Promise((resolve) =>
        s.on("newMessage", (m) => {
          got.push(m.text);
          if (m.text === reply) resolve();
        }),
      );
      const joined = await s.timeout(5000).emitWithAck("joinRoom", { roomId: room });
      const sent = await s.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: long });
      const replyOk = await window.__sendReply();
      await replied;
      const extensions = s.io.engine.transport.ws.extensions;
      s.disconnect();
      return { joined: joined.ok, sent: sent.ok, replyOk, got, extensions };
    },
    { token: alice.token, room, long, reply },
  ).catch((e) => ({ error: String(e) }));
  assert.equal(result.error, undefined);
  await context.close();
  node.disconnect();
  assert.deepEqual(result, { joined: true, sent: true, replyOk: true, got: [long, reply], extensions: "permessage-deflate; server_no_context_takeover; client_no_context_takeover" });
  assert.deepEqual(nodeGot, [long, reply]);
  assert.ok((await counter("parley_ws_inflate_messages_total")) > inflatedBefore, "Chromium's frames were compressed");
  // The two long messages, each to both members.
  assert.ok((await counter("parley_ws_deflate_frames_total")) >= framesBefore + 4, "the server's frames were compressed");
});
