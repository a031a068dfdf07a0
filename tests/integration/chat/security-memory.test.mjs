// One client cannot make the chat server hold memory (security review: history
// amplification and clients that never read). The parley process's resident memory
// (VmRSS) is sampled while one connection does its worst for a few seconds:
//
// - joinRoom answers each join with messageHistory, the room's last 50 messages: with 50
//   messages of the largest size (--max-text code points of 4-byte characters, ~800 KB per
//   reply), a socket re-joining as fast as its acks come back asks for tens of MB per
//   second. Replies to one socket are not kept in the recovery log (SIO_NO_RECOVERY), so
//   even an attacker with every rate limit lifted leaves the server's memory where it was;
//   before, each reply stayed in the log for the 2-minute recovery window.
// - With the default limits the same attacker is refused (rate_limited) past its event
//   burst, and disconnected once it keeps going past --flood-limit refusals.
// - A WebSocket client that keeps sending history requests (each answered with ~800 KB),
//   or WebSocket pings, and never reads: the server stops reading it once --output-limit
//   is queued, closes it once its output made no progress for --send-timeout, and answers
//   everyone else all the while.
//
// The bound (64 MiB of growth; 0.5–15 MiB measured, release and ASan) is generous and far
// below what the unbounded behaviour held (350–670 MiB in these 3 to 6 s, measured on
// 36bd00a; the history-request flood alone was already cut off there, by the Socket.IO
// layer's slow-consumer close at 4 MiB). PARLEY_MEM_LEGACY=1 leaves out the flags a
// build from before those fixes does not know, to run this suite against one and see it
// fail (for comparisons only: the suite is meant to pass without it). It measures one
// process, so it is not among the suites ctest runs again with --workers.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, afterEach, before, describe, it } from "node:test";
import { io } from "socket.io-client";

import { OP, frame, wsConnect } from "../lib/raw.mjs";
import { sanitized } from "../lib/server.mjs";
import { connected, health, newRoom, newUser, request, serverPerSuite, sleep, startParley, waitUntil, withTimeout } from "./util.mjs";

const T = { timeout: 60000 };
const LEGACY = process.env.PARLEY_MEM_LEGACY === "1";
const newFlags = (...flags) => (LEGACY ? [] : flags);
const API_KEY = "memory-suite-api-key-0123456789";
const MiB = 1 << 20;
// Growth allowed while an attack runs.
const BOUND = 64 * MiB;
const mib = (n) => (n / MiB).toFixed(1);

// ASan keeps freed memory in quarantine, 256 MiB by default: as much as an attack that
// churns large buffers would hold. A small quarantine lets the bound above tell them apart
// (the rest of the harness's ASAN_OPTIONS as in lib/server.mjs).
const ENV = sanitized ? { ASAN_OPTIONS: "detect_leaks=1:abort_on_error=0:exitcode=23:quarantine_size_mb=16" } : {};
const start = (args) => startParley(args, { env: ENV });

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m[1]) * 1024;
}

// Samples pid's RSS every 50 ms until stop(); returns {base, peak(), last(), stop()}.
function rssWatch(pid) {
  const base = rssBytes(pid);
  let peak = base;
  let last = base;
  const sample = () => {
    try {
      last = rssBytes(pid);
      peak = Math.max(peak, last);
    } catch {
      // the process is gone: the test will say so
    }
  };
  const timer = setInterval(sample, 50);
  return {
    base,
    peak: () => (sample(), peak),
    last: () => last,
    stop: () => {
      sample();
      clearInterval(timer);
    },
  };
}

// The largest message text: --max-text (4000) code points, 4 bytes each in UTF-8.
const bigText = (i) => `${String(i).padStart(3, "0")} ${"\u{1F600}".repeat(3996)}`;

// Fills room with 50 of the largest messages through the HTTP API (the API key is not rate
// limited, so the server's limits stay what the test chose).
async function fillRoom(srv, room) {
  for (let i = 0; i < 50; i++) {
    const r = await request(`${srv.url}/api/rooms/${encodeURIComponent(room)}/messages`, {
      method: "POST",
      headers: { "x-api-key": API_KEY, "content-type": "application/json" },
      body: JSON.stringify({ text: bigText(i), userId: "filler" }),
    });
    assert.equal(r.status, 201, r.text);
  }
}

// A socket.io-client socket with no Recorder (an attacker's replies are counted, not kept).
async function rawSocket(srv, user = newUser()) {
  const s = io(srv.url, { forceNew: true, reconnection: false, timeout: 5000, transports: ["websocket"], auth: { token: user.token } });
  await connected(s);
  return s;
}

function closeSocket(s) {
  s?.disconnect();
  s?.io._close?.();
}

// Re-joins room on s, `window` joinRooms outstanding at a time (the next batch as soon as
// the last ack of this one is back), for ms or until the socket is disconnected. Returns the
// counts of acks by kind and of messageHistory replies received (with the size of one, as
// JSON). A window over 1 is the flooder that does not wait: it outruns a refill rate of
// 20/s even when the server is slow (a sanitizer build answers about 40 joins/s one at a
// time, which empties a burst of 100 only after about 7 s).
async function rejoinLoop(s, room, ms, window = 1) {
  const out = { ok: 0, limited: 0, other: 0, replies: 0, replyBytes: 0, elapsedMs: 0 };
  const onHistory = (h) => {
    out.replies++;
    if (!out.replyBytes) out.replyBytes = Buffer.byteLength(JSON.stringify(["messageHistory", h]));
  };
  s.on("messageHistory", onHistory);
  const started = Date.now();
  try {
    while (Date.now() - started < ms && s.connected) {
      const acks = await Promise.allSettled(
        Array.from({ length: window }, () => s.timeout(5000).emitWithAck("joinRoom", { roomId: room })),
      );
      for (const a of acks) {
        if (a.status === "rejected") continue; // disconnected with the ack outstanding
        if (a.value?.ok === true) out.ok++;
        else if (a.value?.ok === false && a.value.error === "rate_limited") out.limited++;
        else out.other++;
      }
      if (acks.some((a) => a.status === "rejected")) break;
    }
  } finally {
    out.elapsedMs = Date.now() - started;
    s.off("messageHistory", onHistory);
  }
  return out;
}

async function healthy(srv) {
  const h = await health(srv);
  assert.equal(h?.status, "ok", `GET /healthz: ${JSON.stringify(h)}`);
  return h;
}

describe("history amplification, with every rate limit lifted", () => {
  const box = serverPerSuite({ before, after, afterEach }, () =>
    start([
      "--store", "memory",
      "--api-key", API_KEY,
      "--rate-burst", "1000000",
      "--rate-per-sec", "1000000",
      ...newFlags("--event-burst", "1000000", "--event-rate", "1000000", "--flood-limit", "0"),
    ]),
  );

  it("one socket re-joining a room of 50 large messages for 3 s: the replies are not kept", T, async (t) => {
    const { srv } = box;
    const room = newRoom("amplify");
    await fillRoom(srv, room);
    let s;
    try {
      s = await rawSocket(srv);
      // Two joins outstanding: enough replies to measure even on a slow (sanitizer) server.
      await rejoinLoop(s, room, 300, 2); // warm up: the server's buffers at their working size
      const rss = rssWatch(srv.process.pid);
      const r = await rejoinLoop(s, room, 3000, 2);
      const peak = rss.peak() - rss.base;
      rss.stop();
      // Before the fix the recovery log kept every reply for 2 minutes.
      const wouldKeep = r.replies * r.replyBytes;
      t.diagnostic(
        `${r.ok} joins in ${r.elapsedMs} ms, ${r.replies} replies of ${mib(r.replyBytes)} MiB ` +
          `(${mib(wouldKeep)} MiB the recovery log would have kept); RSS ${mib(rss.base)} → peak ` +
          `${mib(rss.base + peak)} MiB (+${mib(peak)}), now ${mib(rss.last())} MiB`,
      );
      assert.equal(r.other + r.limited, 0, "the attacker is not throttled here");
      assert.ok(r.replyBytes > 700000, `a reply is ${r.replyBytes} bytes`);
      assert.ok(r.replies >= 100, `${r.replies} replies: too few to measure anything`);
      assert.ok(peak < BOUND, `RSS grew by ${mib(peak)} MiB (bound ${mib(BOUND)}) for ${r.replies} replies`);
      assert.ok(peak < wouldKeep / 4, `RSS grew by ${mib(peak)} MiB; keeping the replies is ${mib(wouldKeep)} MiB`);
      assert.equal(s.connected, true);
      await healthy(srv);
    } finally {
      closeSocket(s);
    }
  });
});

describe("history amplification, with the default limits", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => start(["--store", "memory", "--api-key", API_KEY]));

  it("the re-joining socket is refused past its burst, then disconnected for flooding; memory stays put", T, async (t) => {
    const { srv } = box;
    const room = newRoom("amplify");
    await fillRoom(srv, room);
    const bystander = await box.clients.connect();
    await bystander.join(room);
    let s;
    try {
      s = await rawSocket(srv);
      const rss = rssWatch(srv.process.pid);
      const gone = new Promise((resolve) => s.once("disconnect", resolve));
      const r = await rejoinLoop(s, room, 6000, 8);
      const peak = rss.peak() - rss.base;
      rss.stop();
      t.diagnostic(
        `${r.ok} joins taken, ${r.limited} refused in ${r.elapsedMs} ms, disconnected: ${!s.connected}; ` +
          `RSS ${mib(rss.base)} → peak ${mib(rss.base + peak)} MiB (+${mib(peak)}), now ${mib(rss.last())} MiB`,
      );
      assert.equal(r.other, 0);
      // The default event bucket: 100 burst, 20/s.
      assert.ok(r.ok >= 100 && r.ok <= 100 + Math.ceil((20 * r.elapsedMs) / 1000) + 1, `${r.ok} joins taken`);
      assert.ok(r.limited > 0, "refused past the burst");
      assert.equal(await withTimeout(gone, 3000, "the flooder's disconnect"), "io server disconnect");
      assert.ok(r.limited >= 1000 && r.limited <= 1001, `disconnected after ${r.limited} refusals (--flood-limit 1000)`);
      await waitUntil(() => /disconnected: flooding/.test(srv.stderr()), { timeoutMs: 3000, what: "the flood log line" });
      assert.ok(peak < BOUND, `RSS grew by ${mib(peak)} MiB (bound ${mib(BOUND)})`);
      // Everyone else is served.
      assert.equal((await bystander.ask("history", { roomId: room, limit: 1 })).ok, true);
      await healthy(srv);
    } finally {
      closeSocket(s);
    }
  });
});

// A Socket.IO connection over a raw WebSocket (masked frames written by hand): the
// Engine.IO open packet, then the namespace connect with auth. Returns the RawConn.
async function rawSioConnect(port, token) {
  const { conn } = await wsConnect(port, { path: "/socket.io/?EIO=4&transport=websocket" });
  const open = await conn.readFrame();
  assert.match(open.text, /^0\{/);
  conn.write(frame({ opcode: OP.TEXT, payload: `40${JSON.stringify({ token })}` }));
  const ok = await conn.readFrame();
  assert.match(ok.text, /^40\{"sid"/);
  return conn;
}

// Reads frames off conn until one whose text satisfies pred.
async function readUntil(conn, pred) {
  for (;;) {
    const f = await conn.readFrame({ timeoutMs: 5000 });
    if (pred(f.text)) return f;
  }
}

// Pauses conn (nothing the server sends is read from then on) and writes chunk(k) (k counts
// from 0) for ms, at most max chunks, keeping at most 1 MiB in the client's own buffer (the
// server decides how much it takes). Meanwhile, every 250 ms, probe() (another client's
// round trip) is timed. Returns {chunks, rtts}.
async function pausedFlood(conn, { chunk, ms, max, probe }) {
  conn.socket.pause();
  let chunks = 0;
  const rtts = [];
  const started = Date.now();
  let nextProbe = started;
  while (Date.now() - started < ms) {
    if (chunks < max && conn.socket.writableLength < MiB && !conn.socket.destroyed) conn.socket.write(chunk(chunks++));
    if (Date.now() >= nextProbe) {
      const t0 = Date.now();
      await probe();
      rtts.push(Date.now() - t0);
      nextProbe = Date.now() + 250;
    }
    await sleep(1);
  }
  return { chunks, rtts };
}

describe("a chat client that sends and never reads", () => {
  const box = serverPerSuite({ before, after, afterEach }, () =>
    start([
      "--store", "memory",
      "--api-key", API_KEY,
      // The event limits lifted: what bounds this client is its output.
      ...newFlags("--event-burst", "1000000", "--event-rate", "1000000", "--flood-limit", "0"),
      ...newFlags("--send-timeout", "2000"),
    ]),
  );

  // A room of 50 large messages, a bystander in it, and the attacker's raw connection
  // (joined too); runs flood on it and checks memory, the bystander and the close.
  async function neverReads(t, flood) {
    const { srv } = box;
    const room = newRoom("noread");
    await fillRoom(srv, room);
    const bystander = await box.clients.connect();
    await bystander.join(room);
    const conn = await rawSioConnect(srv.port, newUser("never reads").token);
    try {
      conn.write(frame({ opcode: OP.TEXT, payload: `420${JSON.stringify(["joinRoom", { roomId: room }])}` }));
      await readUntil(conn, (x) => x.startsWith("430"));
      const clientsBefore = (await healthy(srv)).clients;
      const logFrom = srv.stderr().length;
      const probe = async () => assert.equal((await bystander.ask("history", { roomId: room, limit: 1 })).ok, true);
      const rss = rssWatch(srv.process.pid);
      const f = await pausedFlood(conn, { ...flood(room), ms: 3000, probe });
      const peakDuring = rss.peak() - rss.base;
      t.diagnostic(
        `${f.chunks} chunks written in 3 s; RSS ${mib(rss.base)} → peak ${mib(rss.base + peakDuring)} MiB ` +
          `(+${mib(peakDuring)}); bystander round trips ${Math.min(...f.rtts)}–${Math.max(...f.rtts)} ms (${f.rtts.length})`,
      );
      assert.ok(peakDuring < BOUND, `RSS grew by ${mib(peakDuring)} MiB (bound ${mib(BOUND)})`);
      // Its output has made no progress for longer than --send-timeout: the server closes it.
      await waitUntil(async () => (await health(srv))?.clients === clientsBefore - 1, {
        timeoutMs: 10000,
        what: "the stalled connection to be closed",
      });
      const peak = rss.peak() - rss.base;
      rss.stop();
      const t0 = Date.now();
      await probe();
      f.rtts.push(Date.now() - t0);
      t.diagnostic(`closed; RSS peak +${mib(peak)} MiB, now ${mib(rss.last())} MiB; a round trip after: ${f.rtts.at(-1)} ms`);
      assert.ok(peak < BOUND, `RSS grew by ${mib(peak)} MiB (bound ${mib(BOUND)})`);
      assert.ok(Math.max(...f.rtts) < 2000, `bystander round trips: ${f.rtts.join(" ")} ms`);
      assert.match(srv.stderr().slice(logFrom), /output stalled for 2000 ms/);
      await healthy(srv);
      return f;
    } finally {
      conn.destroy();
    }
  }

  it("history requests (~800 KB answered each): memory stays put, others are answered, the stalled connection is closed", T, async (t) => {
    // At most 2000 requests (1.6 GB of answers), 50 a write.
    let id = 0;
    const f = await neverReads(t, (room) => ({
      max: 40,
      chunk: () =>
        Buffer.concat(
          Array.from({ length: 50 }, () => frame({ opcode: OP.TEXT, payload: `42${++id}${JSON.stringify(["history", { roomId: room, limit: 100 }])}` })),
        ),
    }));
    assert.equal(f.chunks, 40);
  });

  it("WebSocket pings (each answered with a pong): memory stays put, others are answered, the stalled connection is closed", T, async (t) => {
    // At most 256 MiB of pings of 125 bytes, 1024 a write.
    const pings = Buffer.concat(Array.from({ length: 1024 }, () => frame({ opcode: OP.PING, payload: Buffer.alloc(125, 0x61) })));
    const f = await neverReads(t, () => ({ max: Math.floor((256 * MiB) / pings.length), chunk: () => pings }));
    t.diagnostic(`${mib(f.chunks * pings.length)} MiB of pings written`);
  });
});
