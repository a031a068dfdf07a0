// A full disk is not forever (issue 11, defect 5; chat/store.h, "A commit that fails").
//
// Before the fix, after one failed commit the store refused every later write, for every
// user, until a restart. Here a real `parley` keeps its data on a small tmpfs (mounted by
// the test: it needs root, and is skipped with a message otherwise). A filler file takes
// the rest of the space; messages are sent until their acks are errors (a message that
// could not be stored must never be acknowledged as sent); the filler is deleted, and
// sends must succeed again by themselves, without a restart. After a clean restart every
// acknowledged message is in the history with its seq, none that was refused is, and each
// room's seqs run from 1 without a gap (the refused messages' seqs were given again).
// While the store is failing, GET /healthz answers 200 "degraded" with the store's error
// (and /readyz 503 "not_ready"),
// and a markRead of a real message is answered with an error (its read mark was not
// stored), so no other member hears messagesRead; once sends work again, /healthz is 200
// "ok" and markRead is acknowledged and announced again.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {
  Clients,
  WS,
  fullHistory,
  newRoom,
  newUser,
  processExit,
  request,
  rmTemp,
  sleep,
  startParley,
  tempDir,
} from "./util.mjs";

const FAST = ["--rate-burst", "100000", "--rate-per-sec", "100000"];
const TMPFS_SIZE = "8m";
const PAD = "x".repeat(2000);
const RESUME_MS = 20000; // the store retries at most every 5 s by default

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
const live = { srv: undefined, clients: undefined, mnt: undefined };

async function stopServer() {
  live.clients?.closeAll();
  const srv = live.srv;
  live.srv = undefined;
  if (srv && srv.process.exitCode === null && srv.process.signalCode === null) {
    srv.process.kill("SIGKILL");
    await processExit(srv.process);
  }
}

after(async () => {
  await stopServer();
  if (live.mnt) {
    for (let i = 0; i < 10; i++) {
      try {
        execFileSync("umount", [live.mnt], { stdio: "ignore" });
        break;
      } catch {
        await sleep(200);
      }
    }
    rmTemp(live.mnt);
  }
});

// GET /healthz → {status (HTTP), body (parsed)}.
async function healthz(srv, path = "/healthz") {
  const r = await request(`${srv.url}${path}`);
  return { status: r.status, body: r.json() };
}

// Writes the file until the file system is full; returns the bytes written.
function fillUp(file) {
  const fd = fs.openSync(file, "w");
  let total = 0;
  try {
    for (const chunk of [Buffer.alloc(1 << 20, 1), Buffer.alloc(4096, 1)]) {
      for (;;) {
        try {
          total += fs.writeSync(fd, chunk);
        } catch (e) {
          if (e.code === "ENOSPC") break;
          throw e;
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return total;
}

test(
  "after a full disk, sends and read marks fail with an error and /healthz is degraded, then all resume by themselves once space is freed",
  { timeout: 120000, skip: isRoot ? false : "needs root to mount a tmpfs as the data directory" },
  async (t) => {
    const mnt = tempDir("disk-full");
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_SIZE},mode=0700`, "none", mnt], { stdio: "pipe" });
    } catch (e) {
      rmTemp(mnt);
      t.skip(`cannot mount a tmpfs here: ${String(e.stderr || e.message).trim()}`);
      return;
    }
    live.mnt = mnt;
    const dataDir = path.join(mnt, "data");
    live.srv = await startParley(FAST, { dataDir });
    live.clients = new Clients(live.srv, WS);
    const roomId = newRoom("full");
    const c = await live.clients.connect(newUser("Filler"));
    await c.join(roomId);
    const watcher = await live.clients.connect(newUser("Watcher"));
    await watcher.join(roomId);
    const ok = await healthz(live.srv);
    assert.equal(ok.status, 200, `/healthz before the disk is full: ${JSON.stringify(ok)}`);
    assert.equal(ok.body.status, "ok");
    assert.equal(ok.body.store, "ok");

    const acked = []; // {id, seq, timestamp, text}
    const refused = []; // texts whose ack was an error
    const sendOnce = async (text) => {
      const ack = await c.ask("sendMessage", { roomId, text }, 10000);
      if (ack?.ok === true) {
        acked.push({ ...ack, text });
        return true;
      }
      assert.equal(ack?.ok, false, `an ack neither ok nor an error: ${JSON.stringify(ack)}`);
      assert.equal(typeof ack.error, "string");
      refused.push(text);
      return false;
    };
    for (let i = 0; i < 5; i++) assert.ok(await sendOnce(`before ${i} ${PAD}`));

    const filler = path.join(mnt, "filler");
    const filled = fillUp(filler);
    let sent = 0;
    while (refused.length < 3 && sent < 2000) await sendOnce(`full ${sent++} ${PAD}`);
    t.diagnostic(`filler ${filled} bytes; ${sent} sends until 3 failed: ${sent - refused.length} acknowledged`);
    assert.ok(refused.length >= 3, `no send failed on a full disk (${sent} sent)`);
    assert.match(live.srv.stderr(), /database or disk is full|No space left on device/);

    // The last send was just refused, so the store is failing now (its first retry is 100 ms
    // away at the soonest, and a retry meets the full disk too): /healthz says so, and a
    // read mark cannot be stored, so it is not acknowledged and nobody hears of it.
    const [sick, readAck] = await Promise.all([
      healthz(live.srv),
      c.ask("markRead", { roomId, messageIds: [acked[acked.length - 1].id] }, 10000),
    ]);
    t.diagnostic(`while full: /healthz ${sick.status} ${JSON.stringify(sick.body)}; markRead ${JSON.stringify(readAck)}`);
    // Alive (liveness: no restart would help), not ready (readiness: send traffic elsewhere).
    assert.equal(sick.status, 200, `/healthz while the store is failing: ${JSON.stringify(sick)}`);
    assert.equal(sick.body.status, "degraded");
    assert.match(sick.body.store, /No space left/, "the store's health names the failure");
    const unready = await healthz(live.srv, "/readyz");
    assert.equal(unready.status, 503, JSON.stringify(unready));
    assert.equal(unready.body.status, "not_ready");
    assert.ok(unready.body.reasons.some((r) => /^store: .*No space left/.test(r)), JSON.stringify(unready.body));
    assert.notEqual(readAck?.ok, true, `markRead acknowledged while its mark could not be stored: ${JSON.stringify(readAck)}`);
    assert.deepEqual(readAck, { ok: false, error: "internal_error" });
    await watcher.flush();
    assert.equal(watcher.rec.count("messagesRead"), 0, "messagesRead announced for a read mark that was not stored");
    // Still full for a while: the store's retries meet the full disk too; whatever a send
    // answers then, the restart below checks it told the truth.
    const fullUntil = Date.now() + 1500;
    while (Date.now() < fullUntil) {
      await sendOnce(`still full ${sent++} ${PAD}`);
      await sleep(20);
    }
    t.diagnostic(`after 1.5 s more on the full disk: ${acked.length - 5} acknowledged, ${refused.length} refused in all`);

    fs.unlinkSync(filler);
    const freedAt = Date.now();
    let resumed = false;
    for (let k = 0; !resumed && Date.now() - freedAt < RESUME_MS; k++) {
      resumed = await sendOnce(`freed ${k} ${PAD}`);
      if (!resumed) await sleep(100);
    }
    assert.ok(resumed, `sends still fail ${RESUME_MS} ms after space was freed`);
    t.diagnostic(`sends resumed ${Date.now() - freedAt} ms after space was freed`);
    for (let k = 0; k < 5; k++) assert.ok(await sendOnce(`after ${k} ${PAD}`), "a send after recovery failed");

    // Healthy again: /healthz is 200 "ok", and a read mark is stored and announced.
    const well = await healthz(live.srv);
    assert.equal(well.status, 200, `/healthz after sends resumed: ${JSON.stringify(well)}`);
    assert.equal(well.body.status, "ok");
    assert.equal(well.body.store, "ok");
    const lastId = acked[acked.length - 1].id;
    const lastSeq = acked[acked.length - 1].seq;
    assert.deepEqual(await c.ask("markRead", { roomId, messageIds: [lastId] }, 10000), { ok: true, lastReadSeq: lastSeq });
    const read = await watcher.rec.next("messagesRead", 10000);
    assert.deepEqual(read, { userId: c.userId, messageIds: [lastId], roomId, lastReadSeq: lastSeq });

    // Restart on the same directory: the history is exactly what was acknowledged.
    live.clients.closeAll();
    const srv = live.srv;
    live.srv = undefined;
    await srv.stop();
    live.srv = await startParley(FAST, { dataDir });
    live.clients = new Clients(live.srv, WS);
    const reader = await live.clients.connect(newUser("Reader"));
    await reader.join(roomId);
    const msgs = await fullHistory(reader, roomId);
    assert.deepEqual(
      msgs.map((m) => m.seq),
      Array.from({ length: msgs.length }, (_, i) => i + 1),
      "seqs 1..N without gaps or repeats",
    );
    const byId = new Map(msgs.map((m) => [m.id, m]));
    for (const a of acked) {
      const m = byId.get(a.id);
      assert.ok(m, `acknowledged message seq ${a.seq} (${a.text.slice(0, 12)}) is missing after the restart`);
      assert.equal(m.seq, a.seq);
      assert.equal(m.text, a.text);
      assert.equal(m.timestamp, a.timestamp);
    }
    const refusedTexts = new Set(refused);
    const stored = msgs.filter((m) => refusedTexts.has(m.text));
    assert.deepEqual(stored.map((m) => m.text.slice(0, 12)), [], "messages answered with an error were stored");
    assert.equal(msgs.length, acked.length, "the history holds the acknowledged messages and nothing else");
    const next = await reader.send(roomId, "after the restart");
    assert.equal(next.seq, msgs.length + 1);
  },
);
