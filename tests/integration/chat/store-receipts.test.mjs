// Read receipts cannot fill the disk (issue 11, defect 4; chat/store.h, chat_store_mark_read).
//
// Before the fix every string a client put in markRead's messageIds became a row of its
// own: one user grew the data directory by 36.7 MB/s. Now a receipt is a position (one row
// per room and user) and ids that name no message of the room are never written. Through
// the official client, two users send markRead at full rate — one with made-up ids only, one
// with the room's real ids over and over — and the data directory must not grow beyond a
// small bound, neither while the server runs (database + WAL) nor in the file it leaves
// after a clean stop. The flood's acks are not asserted (the sizes are); the acks and the
// announcements are, one call at a time, in the first test: markRead is acknowledged
// {ok:true} only when one of its ids names a message of the room (and only then do the
// other members hear messagesRead); ids that name none answer {ok:false, error:"not_found"}
// and nobody hears of them (docs/CHAT-API.md, markRead).
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

const live = { servers: [], clients: [], dirs: [] };

after(async () => {
  for (const c of live.clients) c.closeAll();
  for (const srv of live.servers) {
    if (srv.process.exitCode === null && srv.process.signalCode === null) {
      srv.process.kill("SIGKILL");
      await processExit(srv.process);
    }
  }
  for (const dir of live.dirs) rmTemp(dir);
});

// A server on a fresh data directory, with its Clients; both cleaned up after the suite.
async function server(tag) {
  const dir = tempDir(tag);
  live.dirs.push(dir);
  const srv = await startParley(FAST, { dataDir: dir });
  live.servers.push(srv);
  const clients = new Clients(srv, WS);
  live.clients.push(clients);
  return { dir, srv, clients };
}

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

test("markRead is acknowledged and announced only when an id names a message of the room", { timeout: 60000 }, async () => {
  const { clients } = await server("receipts-acks");
  const roomId = newRoom("acks");
  const otherRoom = newRoom("acks-other");
  const writer = await clients.connect(newUser("Writer"));
  const member = await clients.connect(newUser("Member"));
  await writer.join(roomId);
  await writer.join(otherRoom);
  await member.join(roomId);
  const real = [];
  for (let i = 0; i < 3; i++) real.push((await writer.send(roomId, `message ${i}`)).id);
  const elsewhere = (await writer.send(otherRoom, "in another room")).id;

  // Made-up ids: id-shaped ones that name no message, another room's message, and strings
  // that are not ids at all. None is stored, so none is acknowledged or announced.
  const prefix = real[0].split("-")[0];
  const madeUp = [
    [`${prefix}-fffffff`],
    [`0123456789abcdef-1`, `${prefix}-7777777`],
    [elsewhere],
    ["not-an-id", "", "x".repeat(300)],
  ];
  for (const messageIds of madeUp) {
    const ack = await writer.ask("markRead", { roomId, messageIds });
    assert.deepEqual(ack, { ok: false, error: "not_found" }, `markRead ${JSON.stringify(messageIds).slice(0, 80)}`);
  }
  // messagesRead would have been queued to the member before the writer's ack went out;
  // a round trip on the member's connection brings whatever was queued for it.
  await member.flush();
  assert.deepEqual(member.rec.of("messagesRead"), [], "messagesRead announced for ids that name no message");

  // A real id (among made-up ones): acknowledged, and the member hears of it, with the ids
  // as sent.
  const ids = [`${prefix}-fffffff`, real[1]];
  // The ack and the news carry the mark: the highest seq read.
  assert.deepEqual(await writer.ask("markRead", { roomId, messageIds: ids }), { ok: true, lastReadSeq: 2 });
  assert.deepEqual(await member.rec.next("messagesRead"), { userId: writer.userId, messageIds: ids, roomId, lastReadSeq: 2 });
  assert.deepEqual(await writer.ask("markRead", { roomId, messageIds: [real[2]] }), { ok: true, lastReadSeq: 3 });
  assert.deepEqual(await member.rec.next("messagesRead"), { userId: writer.userId, messageIds: [real[2]], roomId, lastReadSeq: 3 });
  // An empty list names nothing to store: ok, and announced as sent.
  assert.deepEqual(await writer.ask("markRead", { roomId, messageIds: [] }), { ok: true, lastReadSeq: 3 });
  assert.deepEqual(await member.rec.next("messagesRead"), { userId: writer.userId, messageIds: [], roomId, lastReadSeq: 3 });
  // More than 1000 ids is not a markRead at all.
  const tooMany = Array.from({ length: 1001 }, () => real[0]);
  assert.deepEqual(await writer.ask("markRead", { roomId, messageIds: tooMany }), { ok: false, error: "invalid_payload" });
  // Only the others hear it.
  await writer.flush();
  assert.equal(writer.rec.count("messagesRead"), 0, "the reader heard its own messagesRead");
  await member.flush();
  assert.equal(member.rec.count("messagesRead"), 3);
});

test("markRead with made-up or repeated ids does not grow the data directory", { timeout: 120000 }, async (t) => {
  const { dir, srv, clients } = await server("receipts");
  const roomId = newRoom("receipts");
  const writer = await clients.connect(newUser("Writer"));
  await writer.join(roomId);
  const sent = [];
  for (let i = 0; i < 30; i++) sent.push(await writer.send(roomId, `message ${i}`));
  const realIds = sent.map((a) => a.id);

  const liar = await clients.connect(newUser("Liar"));
  const reader = await clients.connect(newUser("Reader"));
  await liar.join(roomId);
  await reader.join(roomId);
  const before = dirBytes(dir);

  // Made-up ids, all different (id-shaped: "<16 hex>-<hex>", as the store makes them), and
  // the same real ids again and again.
  const prefix = realIds[0].split("-")[0];
  const [bogus, repeated] = await Promise.all([
    flood(liar, roomId, CALLS, (i) => Array.from({ length: IDS }, (_, j) => `${prefix}-${(0x1000000 + i * IDS + j).toString(16)}`)),
    flood(reader, roomId, CALLS, () => Array.from({ length: IDS }, (_, j) => realIds[j % realIds.length])),
  ]);
  await writer.flush();
  const grown = dirBytes(dir) - before;
  t.diagnostic(`acks: made-up ${summary(bogus)}, repeated ${summary(repeated)}; directory grew ${grown} bytes`);
  assert.ok(grown <= LIVE_BOUND, `the data directory grew by ${grown} bytes during ${2 * CALLS} markRead calls`);

  // History is untouched, and the server still works.
  const more = await writer.send(roomId, "after the flood");
  assert.equal(more.seq, 31);

  clients.closeAll();
  await srv.stop();
  const size = fs.statSync(path.join(dir, "parley.db")).size;
  t.diagnostic(`parley.db after a clean stop: ${size} bytes`);
  assert.ok(size <= FILE_BOUND, `parley.db is ${size} bytes after the flood`);
});
