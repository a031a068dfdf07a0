// 10,000 official clients spread over 4 workers (sio_test_server --workers 4), in 1,000
// rooms of 10 whose members sit on any worker: one broadcast per room reaches each member
// exactly once and nobody else.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { io } from "socket.io-client";

import { startServer } from "../lib/server.mjs";
import { pool, waitUntil } from "../lib/wait.mjs";

const CLIENTS = 10000;
const ROOM = 10;
const WORKERS = 4;

let srv;
const sockets = [];
after(async () => {
  for (const s of sockets) s.close();
  await srv?.stop();
});

test(`${CLIENTS} clients over ${WORKERS} workers: one broadcast per room, each member gets it once`, { timeout: 240000 }, async () => {
  srv = await startServer("sio_test_server", ["--workers", String(WORKERS)]);
  const got = new Array(CLIENTS).fill(null).map(() => []);
  await pool(CLIENTS, 200, async (i) => {
    const s = io(srv.url, { forceNew: true, reconnection: false, transports: ["websocket"], timeout: 20000 });
    sockets[i] = s;
    s.on("roomcast", (room) => got[i].push(room));
    await new Promise((resolve, reject) => {
      s.once("connect", resolve);
      s.once("connect_error", reject);
    });
    const ok = await s.timeout(20000).emitWithAck("join", `r${Math.floor(i / ROOM)}`);
    assert.equal(ok, true);
  });
  const workers = new Set(sockets.map((s) => s.io.engine.id[0]));
  assert.equal(workers.size, WORKERS, `workers used: ${[...workers]}`);
  const rooms = CLIENTS / ROOM;
  // One member of each room broadcasts to it (itself included: a plain room broadcast).
  await pool(rooms, 100, async (r) => {
    const ok = await sockets[r * ROOM].timeout(20000).emitWithAck("broadcast", { event: "roomcast", args: [`r${r}`], rooms: [`r${r}`] });
    assert.equal(ok, true);
  });
  await waitUntil(() => got.every((g) => g.length >= 1), { timeoutMs: 60000, what: "every client got its room's message" });
  // A round trip on every connection afterwards leaves a duplicate the time to show up.
  await pool(CLIENTS, 500, (i) => sockets[i].timeout(20000).emitWithAck("echo", 1));
  for (let i = 0; i < CLIENTS; i++) assert.deepEqual(got[i], [`r${Math.floor(i / ROOM)}`], `client ${i}`);
});
