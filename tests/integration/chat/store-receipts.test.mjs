// Read receipts cannot fill the disk (issue 11, defect 4; chat/store.h, chat_store_mark_read).
//
// Before the fix every string a client put in markRead's messageIds became a row of its
// own: one user grew the data directory by 36.7 MB/s. Now a receipt is a position (one row
// per room and user) and ids that name no message of the room are never written. Through
// the official client, two users send markRead at full rate — one with made-up ids only, one
// with the room's real ids over and over — and the data directory must not grow beyond a
// small bound, neither while the server runs (database + WAL) nor in the file it leaves
// after a clean stop. The acks are not asserted here (their wording belongs to the service);
// the sizes are.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Clients, WS, newRoom, newUser, processExit, rmTemp, startParley, tempDir } from "./util.mjs";

const FAST = ["--rate-burst", "100000", "--rate-per-sec", "100000"];
const CALLS = 200; // markRead calls per user
const IDS = 1000; // ids per call (the most the service takes)
// The directory may grow by this much during the flood (the WAL of a few commits); the
// receipts as sent would be about CALLS * IDS * 60 bytes, 12 MB, per user.
const LIVE_BOUND = 256 * 1024;
// The database file after a clean stop: 30 messages and one read mark.
const FILE_BOUND = 256 * 1024;

const live = { srv: undefined, clients: undefined, dir: undefined };

after(async () => {
  live.clients?.closeAll();
  if (live.srv && live.srv.process.exitCode === null && live.srv.process.signalCode === null) {
    live.srv.process.kill("SIGKILL");
    await processExit(live.srv.process);
  }
  rmTemp(live.dir);
});

function dirBytes(dir) {
  let total = 0;
  for (const name of fs.readdirSync(dir)) total += fs.statSync(path.join(dir, name)).size;
  return total;
}

// n calls of markRead with ids(i), at most 16 in flight; resolves with the acks (or the
// errors) in order.
async function flood(c, roomId, n, ids) {
  const acks = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      acks[i] = await c.ask("markRead", { roomId, messageIds: ids(i) }, 20000).catch((e) => ({ thrown: String(e) }));
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return acks;
}

const summary = (acks) => {
  const counts = {};
  for (const a of acks) {
    const k = a?.ok === true ? "ok" : a?.error ?? a?.thrown ?? JSON.stringify(a);
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return JSON.stringify(counts);
};

test("markRead with made-up or repeated ids does not grow the data directory", { timeout: 120000 }, async (t) => {
  live.dir = tempDir("receipts");
  live.srv = await startParley(FAST, { dataDir: live.dir });
  live.clients = new Clients(live.srv, WS);
  const roomId = newRoom("receipts");
  const writer = await live.clients.connect(newUser("Writer"));
  await writer.join(roomId);
  const sent = [];
  for (let i = 0; i < 30; i++) sent.push(await writer.send(roomId, `message ${i}`));
  const realIds = sent.map((a) => a.id);

  const liar = await live.clients.connect(newUser("Liar"));
  const reader = await live.clients.connect(newUser("Reader"));
  await liar.join(roomId);
  await reader.join(roomId);
  const before = dirBytes(live.dir);

  // Made-up ids, all different (id-shaped: "<16 hex>-<hex>", as the store makes them), and
  // the same real ids again and again.
  const prefix = realIds[0].split("-")[0];
  const [bogus, repeated] = await Promise.all([
    flood(liar, roomId, CALLS, (i) => Array.from({ length: IDS }, (_, j) => `${prefix}-${(0x1000000 + i * IDS + j).toString(16)}`)),
    flood(reader, roomId, CALLS, () => Array.from({ length: IDS }, (_, j) => realIds[j % realIds.length])),
  ]);
  await writer.flush();
  const grown = dirBytes(live.dir) - before;
  t.diagnostic(`acks: made-up ${summary(bogus)}, repeated ${summary(repeated)}; directory grew ${grown} bytes`);
  assert.ok(grown <= LIVE_BOUND, `the data directory grew by ${grown} bytes during ${2 * CALLS} markRead calls`);

  // History is untouched, and the server still works.
  const more = await writer.send(roomId, "after the flood");
  assert.equal(more.seq, 31);

  live.clients.closeAll();
  await live.srv.stop();
  const size = fs.statSync(path.join(live.dir, "parley.db")).size;
  t.diagnostic(`parley.db after a clean stop: ${size} bytes`);
  assert.ok(size <= FILE_BOUND, `parley.db is ${size} bytes after the flood`);
});
