// A worker killed with SIGKILL while chat clients on every worker send with acks
// (parley --workers 3, SQLite): no acknowledged message is missing or duplicated, each
// room's seqs stay 1..N without a gap, the killed worker's clients reconnect (to any
// worker) and go on, and the supervisor restarts the worker.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, test } from "node:test";

import { Clients, fullHistory, newRoom, newUser, sleep, startParley, waitUntil } from "./util.mjs";

const workerPids = (pid) =>
  execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
    .split("\n")
    .map((l) => Number(l.trim()))
    .filter(Boolean);
const workerOf = (c) => "ABC".indexOf(c.s.io.engine.id[0]) + 1;

let srv, clients;
after(async () => {
  clients?.closeAll();
  await srv?.stop();
  srv?.cleanup();
});

test("SIGKILL of a worker under acked sends: nothing acked is lost or doubled, seqs stay gap-free", { timeout: 90000 }, async () => {
  srv = await startParley(["--workers", "3", "--rate-burst", "1000", "--rate-per-sec", "1000",
    "--event-burst", "1000", "--event-rate", "1000"]);
  clients = new Clients(srv);
  const rooms = [newRoom("kill-a"), newRoom("kill-b")];
  // Senders on every worker (reconnecting by themselves, as real clients do).
  const senders = [];
  for (let i = 0; i < 30 && new Set(senders.map(workerOf)).size < 3 || senders.length < 9; i++) {
    senders.push(await clients.connect(newUser(), { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300 }));
  }
  assert.equal(new Set(senders.map(workerOf)).size, 3, "senders on every worker");
  for (const c of senders) for (const r of rooms) await c.join(r);
  // A sender that comes back without its session (its worker died) joins again.
  for (const c of senders) c.s.on("connect", () => (c.rejoin = !c.s.recovered));

  const acked = new Map(rooms.map((r) => [r, []])); // room → [{id, seq, text}]
  let stop = false;
  const loops = senders.map(async (c, k) => {
    for (let n = 0; !stop; n++) {
      const room = rooms[n % 2];
      const text = `s${k}-${n}`;
      try {
        if (!c.s.connected) await waitUntil(() => c.s.connected, { timeoutMs: 10000, what: "reconnected" });
        if (c.rejoin) {
          c.rejoin = false;
          for (const r of rooms) await c.join(r);
        }
        const ack = await c.ask("sendMessage", { roomId: room, text }, 3000);
        if (ack?.ok) acked.get(room).push({ id: ack.id, seq: ack.seq, text });
      } catch {
        /* disconnected mid-send: not acknowledged, so not owed */
      }
    }
  });

  await waitUntil(() => [...acked.values()].reduce((a, v) => a + v.length, 0) >= 200, { timeoutMs: 20000, what: "200 acks" });
  const pids = workerPids(srv.process.pid);
  assert.equal(pids.length, 3);
  const victim = pids[1];
  process.kill(victim, "SIGKILL");
  await waitUntil(() => /killed by signal 9/.test(srv.stderr()), { what: "the kill noticed" });
  await waitUntil(() => workerPids(srv.process.pid).length === 3 && !workerPids(srv.process.pid).includes(victim), {
    timeoutMs: 15000,
    what: "the worker restarted",
  });
  // Everyone is back and sending again.
  await waitUntil(() => senders.every((c) => c.s.connected), { timeoutMs: 15000, what: "all senders reconnected" });
  const before = [...acked.values()].reduce((a, v) => a + v.length, 0);
  await waitUntil(() => [...acked.values()].reduce((a, v) => a + v.length, 0) >= before + 100, { timeoutMs: 20000, what: "100 more acks" });
  stop = true;
  await Promise.all(loops);
  await sleep(200);

  const reader = senders.find((c) => c.s.connected);
  for (const room of rooms) {
    const history = await fullHistory(reader, room);
    const seqs = history.map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), `${room}: seqs 1..N`);
    const ids = new Set(history.map((m) => m.id));
    assert.equal(ids.size, history.length, `${room}: no duplicate`);
    const texts = history.map((m) => m.text);
    assert.equal(new Set(texts).size, texts.length, `${room}: no text stored twice`);
    for (const a of acked.get(room)) {
      const m = history.find((h) => h.id === a.id);
      assert.ok(m, `${room}: acked ${a.text} (seq ${a.seq}) is stored`);
      assert.equal(m.seq, a.seq);
      assert.equal(m.text, a.text);
    }
  }
});
