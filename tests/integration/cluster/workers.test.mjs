// Worker processes behind one port (parley/cluster.h), driven through sio_test_server
// --workers N with the official client: broadcasts and room operations across workers,
// long-polling with no sticky balancer (every request on a fresh TCP connection, so it
// lands on any worker and is handed to the owner), the upgrade of such a session, a
// worker killed with SIGKILL and restarted, and SIGTERM stopping them all.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { io } from "socket.io-client";

import { connected, Recorder } from "../lib/sio.mjs";
import { processExit, startServer } from "../lib/server.mjs";
import { sleep, waitUntil } from "../lib/wait.mjs";

const T = { timeout: 60000 };
const WORKERS = 3;

// Every polling request on its own TCP connection: the server closes after each answer.
const FRESH = { transportOptions: { polling: { extraHeaders: { Connection: "close" } } } };

// The worker a socket's session lives on: session ids start with its letter.
const workerOf = (s) => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef".indexOf(s.io.engine.id[0]) + 1;

function workerPids(supervisor) {
  const out = execFileSync("ps", ["-o", "pid=", "--ppid", String(supervisor)], { encoding: "utf8" });
  return out.split("\n").map((l) => Number(l.trim())).filter(Boolean);
}

describe("sio_test_server --workers 3", () => {
  let srv;
  const sockets = [];
  const open = async (opts = {}) => {
    const s = io(srv.url, { forceNew: true, reconnection: false, ...opts });
    sockets.push(s);
    await connected(s);
    return s;
  };

  before(async () => {
    srv = await startServer("sio_test_server", ["--workers", String(WORKERS)]);
  });
  after(async () => {
    for (const s of sockets) s.close();
    await srv?.stop();
    assert.match(srv.stderr(), /sup cluster signal 15: stopping 3 workers/);
  });

  it("spreads connections over every worker; a room broadcast reaches each member once", T, async () => {
    const members = [];
    for (let i = 0; i < 24; i++) members.push(await open({ transports: ["websocket"] }));
    const used = new Set(members.map(workerOf));
    assert.equal(used.size, WORKERS, `workers used: ${[...used]}`);
    await Promise.all(members.map((s) => s.emitWithAck("join", "everyone")));
    const recs = members.map((s) => new Recorder(s));
    const outsider = await open({ transports: ["websocket"] });
    const outRec = new Recorder(outsider);
    await members[0].emitWithAck("broadcast", { event: "hello", args: [1, { w: "x" }], rooms: ["everyone"] });
    await Promise.all(recs.map((r) => r.next("hello")));
    // A marker from every worker's own side proves nothing else is on its way: send one
    // more broadcast to the whole namespace and wait for it everywhere.
    await members[1].emitWithAck("broadcast", { event: "marker", args: [] });
    await Promise.all([...recs, outRec].map((r) => r.next("marker")));
    for (const r of recs) assert.deepEqual(r.argsOf("hello"), [[1, { w: "x" }]]);
    assert.deepEqual(outRec.argsOf("hello"), []);
  });

  it("binary attachments cross workers", T, async () => {
    const a = await open({ transports: ["websocket"] });
    let b;
    for (let i = 0; i < 20 && (!b || workerOf(b) === workerOf(a)); i++) b = await open({ transports: ["websocket"] });
    assert.notEqual(workerOf(a), workerOf(b));
    await b.emitWithAck("join", "bin");
    const rec = new Recorder(b);
    await a.emitWithAck("broadcast", { event: "blob", args: [Buffer.from([1, 2, 3]), { x: Buffer.from("yz") }], rooms: ["bin"] });
    const [buf, obj] = await rec.next("blob");
    assert.deepEqual([...buf], [1, 2, 3]);
    assert.equal(Buffer.from(obj.x).toString(), "yz");
  });

  it("socketsJoin, socketsLeave and disconnectSockets apply on every worker", T, async () => {
    const group = [];
    for (let i = 0; i < 9; i++) group.push(await open({ transports: ["websocket"] }));
    await Promise.all(group.map((s) => s.emitWithAck("join", "g")));
    await group[0].emitWithAck("socketsJoin", { rooms: ["g"], room: "g2" });
    // Wait until every member is in g2 on its own worker.
    await waitUntil(async () => (await Promise.all(group.map((s) => s.emitWithAck("rooms")))).every((r) => r.includes("g2")), { what: "all in g2" });
    await group[0].emitWithAck("socketsLeave", { rooms: ["g"], room: "g2" });
    await waitUntil(async () => (await Promise.all(group.map((s) => s.emitWithAck("rooms")))).every((r) => !r.includes("g2")), { what: "none in g2" });
    const gone = group.map((s) => new Promise((r) => s.once("disconnect", r)));
    const outsider = await open({ transports: ["websocket"] });
    await outsider.emitWithAck("disconnectSockets", { rooms: ["g"], close: false });
    await Promise.all(gone);
    assert.ok(outsider.connected);
  });

  it("long-polling with every request on a fresh connection works on any worker", T, async () => {
    const polls = [];
    for (let i = 0; i < 6; i++) polls.push(await open({ transports: ["polling"], ...FRESH }));
    for (const p of polls) assert.equal(await p.timeout(5000).emitWithAck("echo", "hi"), "hi");
    await Promise.all(polls.map((s) => s.emitWithAck("join", "polls")));
    const recs = polls.map((s) => new Recorder(s));
    const ws = await open({ transports: ["websocket"] });
    await ws.emitWithAck("broadcast", { event: "news", args: ["p"], rooms: ["polls"] });
    await Promise.all(recs.map((r) => r.next("news")));
    // Heartbeats keep the sessions alive across workers: still connected afterwards.
    await sleep(500);
    assert.ok(polls.every((p) => p.connected));
  });

  it("the polling→websocket upgrade of such a session lands on its owner", T, async () => {
    const s = await open({ ...FRESH });
    await waitUntil(() => s.io.engine.transport.name === "websocket", { what: "upgraded" });
    assert.equal(await s.timeout(5000).emitWithAck("echo", "up"), "up");
  });

  it("a worker killed while its sockets owe acknowledgements: they count as lost, the others answer", T, async () => {
    const members = [];
    for (let i = 0; i < 15; i++) members.push(await open({ transports: ["websocket"] }));
    const pidOf = new Map();
    for (const s of members) pidOf.set(s, (await s.emitWithAck("whoami")).pid);
    const asker = members[0];
    const victim = [...new Set(pidOf.values())].find((pid) => pid !== pidOf.get(asker));
    assert.ok(victim, "sockets on another worker than the asker's");
    const silent = members.filter((s) => pidOf.get(s) === victim);
    for (const s of members) if (pidOf.get(s) !== victim) s.on("ask", (cb) => cb(pidOf.get(s)));
    await Promise.all(members.map((s) => s.emitWithAck("join", "owed")));
    const rec = new Recorder(asker);
    // Once they have the packet, their worker has told the asker's how many it sent.
    const asked = silent.map((s) => new Promise((r) => s.once("ask", r)));
    // No timeout: only the worker's exit can settle what its sockets owe.
    assert.equal(await asker.emitWithAck("roomAck", { rooms: ["owed"], event: "ask", args: [], timeout: 0 }), true);
    await Promise.all(asked);
    process.kill(victim, "SIGKILL");
    const [result] = await rec.next("room-ack-result", 10000);
    assert.equal(result.err, -32, "EPIPE: recipients were lost");
    assert.equal(result.responses.length, members.length - silent.length);
    assert.ok(result.responses.every(([pid]) => pid !== victim));
    await waitUntil(() => workerPids(srv.process.pid).length === WORKERS && !workerPids(srv.process.pid).includes(victim), {
      what: "the worker restarted",
    });
  });

  it("a worker killed with SIGKILL drops only its connections and comes back", T, async () => {
    const clients = [];
    for (let i = 0; i < 12; i++) clients.push(await open({ transports: ["websocket"] }));
    const pids = workerPids(srv.process.pid);
    assert.equal(pids.length, WORKERS);
    // The victim: a worker that holds some of them (one restarted by an earlier test may
    // have been still starting when they connected, and hold none).
    const pidOf = await Promise.all(clients.map(async (s) => (await s.emitWithAck("whoami")).pid));
    const victim = pidOf[0];
    assert.ok(pids.includes(victim));
    const theirs = clients.filter((s, i) => pidOf[i] === victim);
    const gone = theirs.map((s) => new Promise((r) => s.once("disconnect", r)));
    process.kill(victim, "SIGKILL");
    await waitUntil(() => /worker \d \(pid \d+\) killed by signal 9/.test(srv.stderr()), { what: "the kill noticed" });
    await Promise.all(gone);
    const alive = clients.filter((s) => s.connected);
    assert.equal(alive.length, clients.length - theirs.length, "only the victim's clients dropped");
    for (const s of alive) assert.equal(await s.timeout(5000).emitWithAck("echo", 1), 1);
    await waitUntil(() => workerPids(srv.process.pid).length === WORKERS && !workerPids(srv.process.pid).includes(victim), {
      what: "the worker restarted",
    });
    // New connections reach every worker again, the restarted one included.
    await waitUntil(async () => {
      const fresh = [];
      for (let i = 0; i < 12; i++) fresh.push(await open({ transports: ["websocket"] }));
      return new Set(fresh.map(workerOf)).size === WORKERS;
    }, { what: "all workers serving", timeoutMs: 15000 });
  });
});

describe("supervision", () => {
  it("a supervisor killed with SIGKILL: its workers (parley, chat store through it) stop by themselves", T, async () => {
    const srv = await startServer("parley", ["--workers", "2", "--store", "memory", "--jwt-secret", "s3cret-s3cret-0123456789"]);
    const pids = workerPids(srv.process.pid);
    assert.equal(pids.length, 2);
    srv.process.kill("SIGKILL");
    await processExit(srv.process);
    const alive = () => pids.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    await waitUntil(() => alive().length === 0, { timeoutMs: 10000, what: "the workers gone" });
    assert.match(srv.stderr(), /lost the supervisor: stopping/);
  });

  it("SIGTERM stops every worker and the supervisor exits 0", T, async () => {
    const srv = await startServer("sio_test_server", ["--workers", "2"]);
    const pids = workerPids(srv.process.pid);
    assert.equal(pids.length, 2);
    const s = io(srv.url, { forceNew: true, reconnection: false, transports: ["websocket"] });
    await connected(s);
    const closed = new Promise((r) => s.once("disconnect", r));
    srv.process.kill("SIGTERM");
    const { code } = await processExit(srv.process);
    assert.equal(code, 0, srv.stderr());
    await closed;
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/);
  });
});
