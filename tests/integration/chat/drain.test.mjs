// Drain and zero-downtime restart (docs/deploy/restart.md, docs/OPERATIONS.md "Drain and
// restart"): on SIGTERM parley stops listening, answers /readyz 503 "draining", lets the
// store work under way finish, then tells every client in the way that makes the official
// clients reconnect — WebSocket close 1001, the Engine.IO close packet to a poll (after
// what was queued for it), the end of an SSE stream — and exits 0 within --drain-timeout.
// A second parley on the same port (SO_REUSEPORT) and data directory takes over: its store
// waits for the old one's lock, and no acknowledged message is lost.
//
// Real parts only: the parley binary, a SQLite file, socket.io-client, the `ws` client,
// Node's own EventSource (undici's, behind --experimental-eventsource in a child process).
import { test, describe, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { io } from "socket.io-client";
import WebSocket from "ws";
import { RawConn } from "../lib/raw.mjs";
import { Checks } from "../lib/wait.mjs";
import { health, newRoom, newUser, processExit, request, rmTemp, sleep, startParley, tempDir, waitUntil, withTimeout } from "./util.mjs";

const FAST = ["--rate-burst", "100000", "--rate-per-sec", "100000", "--event-burst", "100000", "--event-rate", "100000"];

// What a test started, torn down whatever happens.
const live = { servers: new Set(), sockets: new Set(), children: new Set(), dirs: new Set() };

async function start(args, dataDir) {
  const srv = await startParley([...FAST, ...args], { dataDir });
  live.servers.add(srv);
  return srv;
}

function dir() {
  const d = tempDir("drain");
  live.dirs.add(d);
  return d;
}

afterEach(async () => {
  for (const s of live.sockets) s.close();
  live.sockets.clear();
  for (const c of live.children) c.kill("SIGKILL");
  live.children.clear();
  for (const srv of live.servers) {
    if (srv.process.exitCode === null && srv.process.signalCode === null) srv.process.kill("SIGKILL");
    await processExit(srv.process);
  }
  live.servers.clear();
  for (const d of live.dirs) rmTemp(d);
  live.dirs.clear();
});

// Resolves once the process has exited and its log has been read to the end (the exit
// may be reported before the last of it).
async function finished(srv) {
  const r = await processExit(srv.process);
  const err = srv.process.stderr;
  if (!err.readableEnded) await new Promise((resolve) => err.once("end", resolve));
  return r;
}

// SIGTERM, then how the process ended and how long it took.
async function term(srv) {
  const t0 = Date.now();
  srv.process.kill("SIGTERM");
  const { code, signal } = await withTimeout(finished(srv), 30000, "exit after SIGTERM");
  live.servers.delete(srv);
  return { code, signal, ms: Date.now() - t0 };
}

function assertClean(srv, { code, signal }) {
  assert.equal(signal, null, srv.stderr());
  assert.equal(code, 0, srv.stderr());
  assert.doesNotMatch(srv.stderr(), /Sanitizer|runtime error:/);
}

// A socket.io-client that reconnects quickly, recording its disconnect reasons and joining
// `room` on every connect (a new process knows nothing of the old one's rooms).
function chatSocket(url, transports, user, room) {
  const s = io(url, {
    forceNew: true,
    transports,
    auth: { token: user.token },
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
    timeout: 3000,
  });
  live.sockets.add(s);
  s.reasons = [];
  s.connects = 0;
  s.joined = false;
  s.on("disconnect", (reason) => {
    s.reasons.push(reason);
    s.joined = false;
  });
  s.on("connect", async () => {
    s.connects++;
    try {
      const ack = await s.timeout(15000).emitWithAck("joinRoom", { roomId: room });
      s.joined = ack?.ok === true && s.connected;
    } catch {
      // disconnected meanwhile: the next connect joins again
    }
  });
  return s;
}

// Node's EventSource in a child process (it is behind a flag in Node 20): one JSON line per
// open, error and newMessage.
function eventSource(url) {
  const script = `
    const es = new EventSource(process.env.ES_URL);
    const out = (o) => console.log(JSON.stringify(o));
    es.onopen = () => out({ type: "open" });
    es.onerror = () => out({ type: "error", readyState: es.readyState });
    es.addEventListener("newMessage", (e) => out({ type: "newMessage", id: e.lastEventId }));
    // undici's wait before reconnecting does not keep a process alive on its own.
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--experimental-eventsource", "--no-warnings", "-e", script], {
    env: { ...process.env, ES_URL: url },
    stdio: ["ignore", "pipe", "inherit"],
  });
  live.children.add(child);
  const es = { events: [], checks: new Checks(), child };
  let rest = "";
  child.stdout.on("data", (d) => {
    const lines = (rest + d).split("\n");
    rest = lines.pop();
    for (const l of lines) if (l) es.events.push(JSON.parse(l));
    es.checks.notify();
  });
  es.count = (type) => es.events.filter((e) => e.type === type).length;
  es.waitCount = (type, n, ms = 10000) => es.checks.wait(() => (es.count(type) >= n ? true : undefined), ms, () => `EventSource: ${n} ${type}; got ${JSON.stringify(es.events)}`);
  return es;
}

// One HTTP/1.1 request on a kept-alive raw connection (so that it reaches the process that
// connection was accepted by, whatever else listens on the port).
async function onConn(conn, method, path, body = "", headers = "") {
  conn.write(`${method} ${path} HTTP/1.1\r\nHost: x\r\n${headers}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  return conn.readResponse();
}

describe("drain (SIGTERM)", () => {
  test("every transport is told so that its client reconnects; readyz says draining; exit 0 in time", async () => {
    const data = dir();
    const a = await start(["--drain-timeout", "10"], data);
    const room = newRoom("drain");
    const user = newUser("ada");

    // Before B listens, so that every one of these is A's.
    const wsSock = chatSocket(a.url, ["websocket"], user, room);
    const pollSock = chatSocket(a.url, ["polling"], user, room);
    await waitUntil(() => wsSock.joined && pollSock.joined, { what: "both sockets joined on A" });
    // The `ws` client, speaking Engine.IO by hand: it sees the close code itself.
    const raw = new WebSocket(`${a.wsUrl}/socket.io/?EIO=4&transport=websocket`);
    live.sockets.add(raw);
    const rawClose = new Promise((resolve) => raw.on("close", (code) => resolve(code)));
    await withTimeout(new Promise((resolve, reject) => raw.once("message", resolve).once("error", reject)), 5000, "ws open packet");
    // A polling session left with a packet queued (the refused Socket.IO connect: no
    // token) and no poll waiting for it, which holds the drain until it is fetched; its
    // connection, kept alive, also asks /readyz (with --workers it is the same worker's).
    const poll = await RawConn.connect(a.port);
    const hs = await onConn(poll, "GET", "/socket.io/?EIO=4&transport=polling");
    const sid = JSON.parse(hs.text.slice(1)).sid;
    assert.equal((await onConn(poll, "POST", `/socket.io/?EIO=4&transport=polling&sid=${sid}`, "40")).status, 200);
    const ready = await onConn(poll, "GET", "/readyz");
    assert.equal(ready.status, 200, ready.text);
    const es = eventSource(`${a.url}/api/rooms/${encodeURIComponent(room)}/events?token=${user.token}`);
    await es.waitCount("open", 1);
    // An HTTP API long-poll held for 30 s: answered (empty) by the drain, at once.
    const held = request(`${a.url}/api/rooms/${encodeURIComponent(room)}/messages?after=0&wait=30`, {
      headers: { authorization: `Bearer ${user.token}` },
      timeoutMs: 20000,
    });
    await waitUntil(async () => (await health(a))?.longPolls === 1, { what: "the long-poll held" });

    // B on the same port and directory: serving, its store waiting for A's lock.
    const b = await start(["--port", String(a.port), "--drain-timeout", "10"], data);
    await waitUntil(() => /locked by another process/.test(b.stderr()), { what: "B's store waiting for the lock" });

    const t0 = Date.now();
    a.process.kill("SIGTERM");
    const exited = finished(a);
    // While A drains: not ready, on a connection it still serves.
    // (Asked again until the signal has arrived: with --workers, at this worker.)
    await waitUntil(() => /draining/.test(a.stderr()), { what: "A's drain started" });
    let draining = await onConn(poll, "GET", "/readyz");
    for (let i = 0; draining.status === 200 && i < 50; i++) {
      await sleep(10);
      draining = await onConn(poll, "GET", "/readyz");
    }
    assert.equal(draining.status, 503, draining.text);
    assert.deepEqual(JSON.parse(draining.text).reasons, ["draining"]);
    // No new work: an HTTP API post is refused, to be sent again elsewhere.
    const post = await onConn(poll, "POST", `/api/rooms/${encodeURIComponent(room)}/messages`, JSON.stringify({ text: "late" }), `Authorization: Bearer ${user.token}\r\nContent-Type: application/json\r\n`);
    assert.equal(post.status, 503, post.text);
    assert.equal(JSON.parse(post.text).error, "unavailable");
    // The poll gets what was queued (the connect error) first, then the close packet.
    const queued = await onConn(poll, "GET", `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
    assert.equal(queued.status, 200);
    assert.match(queued.text, /^44/, "the queued packet first");
    const closing = await onConn(poll, "GET", `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
    assert.equal(closing.text, "1", "then the Engine.IO close packet");
    assert.equal(await withTimeout(rawClose, 5000, "ws close"), 1001, "WebSocket close code 1001 (going away)");
    const answered = await held;
    assert.equal(answered.status, 200, answered.text);
    assert.deepEqual(JSON.parse(answered.text), [], "answered empty, long before its 30 s");

    const { code, signal } = await withTimeout(exited, 15000, "A's exit");
    live.servers.delete(a);
    assertClean(a, { code, signal });
    assert.ok(Date.now() - t0 < 10000, `A exited within --drain-timeout (${Date.now() - t0} ms)`);
    assert.match(a.stderr(), /draining/);
    assert.doesNotMatch(a.stderr(), /drain timeout/, "nothing had to be cut");

    // Transport close, not "io server disconnect": socket.io-client reconnects, to B.
    await waitUntil(() => wsSock.connects >= 2 && pollSock.connects >= 2 && wsSock.joined && pollSock.joined, {
      timeoutMs: 15000,
      what: "both sockets reconnected and joined on B",
    });
    assert.deepEqual(wsSock.reasons, ["transport close"]);
    assert.deepEqual(pollSock.reasons, ["transport close"]);
    // The EventSource saw its stream end (error, readyState CONNECTING) and opened again, on B.
    await es.waitCount("open", 2, 15000);
    assert.deepEqual(
      es.events.filter((e) => e.type === "error").map((e) => e.readyState),
      [0],
      "one error, while reconnecting (readyState CONNECTING), not CLOSED",
    );
    // B's store opened once A's lock was free, and it serves: a message goes round.
    const ack = await wsSock.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: "on B" });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    await es.waitCount("newMessage", 1);
    const readyB = await request(`${b.url}/readyz`);
    assert.equal(readyB.status, 200, readyB.text);
    poll.destroy();
    assertClean(b, await term(b));
  });

  test("a store waiting for another process's lock: calls queue, /readyz says why, and it opens once the lock is free", async () => {
    const data = dir();
    const a = await start([], data);
    // Another port, so that every request below reaches B.
    const b = await start(["--store-lock-wait", "30"], data);
    // With workers a worker learns its store owner's state from the supervisor, a message
    // after it starts: /readyz may say ready for that moment.
    let r;
    await waitUntil(async () => (r = await request(`${b.url}/readyz`)).status === 503, { what: "/readyz 503 while the store waits" });
    assert.match(JSON.parse(r.text).reasons.join(), /store: .*waiting for its lock/);
    const room = newRoom("wait");
    const user = newUser("bo");
    const s = chatSocket(b.url, ["websocket"], user, room);
    await waitUntil(() => s.connected, { what: "connected to B" });
    // joinRoom reads the room's history: queued behind the lock, answered once A lets go.
    await sleep(300);
    assert.equal(s.joined, false, "joinRoom waits for the store");
    assertClean(a, await term(a));
    await waitUntil(() => s.joined, { timeoutMs: 10000, what: "the join answered once the store opened" });
    const ack = await s.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: "after" });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.equal((await request(`${b.url}/readyz`)).status, 200);
    assertClean(b, await term(b));
  });

  test("--store-lock-wait 0 refuses to start on a directory in use", async () => {
    const data = dir();
    const a = await start([], data);
    await assert.rejects(start(["--store-lock-wait", "0"], data), /in use by another process/);
    assertClean(a, await term(a));
  });

  test("--reuse-port=0 refuses a port another process listens on", async () => {
    const a = await start([], dir());
    // (With --workers it is refused at once: the workers share the port.)
    await assert.rejects(start(["--port", String(a.port), "--reuse-port=0"], dir()), /address already in use|needs --reuse-port/);
    assertClean(a, await term(a));
  });

  test("a lock still held after --store-lock-wait: the process stops, status 1", async () => {
    const data = dir();
    const a = await start([], data);
    const b = await start(["--store-lock-wait", "1"], data);
    const { code } = await withTimeout(finished(b), 10000, "B gives up");
    live.servers.delete(b);
    assert.equal(code, 1, b.stderr());
    assert.match(b.stderr(), /its lock is still held by another process/);
    assertClean(a, await term(a));
  });

  test("a client that never reads cannot hold the process past --drain-timeout", async () => {
    const a = await start(["--drain-timeout", "1"], dir());
    // A WebSocket that never reads and never answers the close: the server's graceful close
    // would wait for it.
    const conn = await RawConn.connect(a.port);
    const key = "dGhlIHNhbXBsZSBub25jZQ==";
    conn.write(
      `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    assert.equal((await conn.readResponse()).status, 101);
    conn.socket.pause();
    // A second SIGTERM is not sent: the timeout alone must end it.
    const { code, signal, ms } = await term(a);
    assertClean(a, { code, signal });
    assert.ok(ms < 1800, `exited ${ms} ms after SIGTERM, --drain-timeout 1`);
    assert.match(a.stderr(), /drain timeout: closing what is still open/);
    conn.destroy();
  });

  test("a second SIGTERM cuts the drain short", async () => {
    const a = await start(["--drain-timeout", "30"], dir());
    const conn = await RawConn.connect(a.port);
    conn.write(
      `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    assert.equal((await conn.readResponse()).status, 101);
    conn.socket.pause();
    const t0 = Date.now();
    a.process.kill("SIGTERM");
    await sleep(200);
    a.process.kill("SIGTERM");
    const { code, signal } = await withTimeout(finished(a), 10000, "exit");
    live.servers.delete(a);
    assertClean(a, { code, signal });
    assert.ok(Date.now() - t0 < 1500, `exited ${Date.now() - t0} ms after the first SIGTERM`);
    assert.match(a.stderr(), /second signal: closing what is still open/);
    conn.destroy();
  });
});

describe("zero-downtime restart (SO_REUSEPORT, one data directory)", () => {
  test("clients move from A to B while sending; every acknowledged message is in B's history", async () => {
    const data = dir();
    const a = await start([], data);
    const room = newRoom("restart");
    const acked = new Map(); // id → seq
    let running = true;
    const sockets = [];
    const loops = [];
    for (let i = 0; i < 6; i++) {
      const s = chatSocket(a.url, i % 3 === 2 ? ["polling"] : ["websocket"], newUser(`u${i}`), room);
      sockets.push(s);
      s.sent = 0;
      loops.push(
        (async () => {
          while (running) {
            if (!s.joined) {
              await sleep(20);
              continue;
            }
            try {
              const ack = await s.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: `m${i}-${s.sent}` });
              if (ack?.ok) {
                acked.set(ack.id, ack.seq);
                s.sent++;
              }
            } catch {
              // disconnected or timed out: unacknowledged, sent again as a new message
            }
          }
        })(),
      );
    }
    await waitUntil(() => sockets.every((s) => s.sent >= 5), { timeoutMs: 15000, what: "every client sending on A" });
    const b = await start(["--port", String(a.port)], data);
    await sleep(300);
    const beforeTerm = acked.size;
    // While both listen, every new connection (a long-poll's next request included) goes
    // to A, the first listener of the port: nobody was disconnected by B's arrival. (With
    // --workers the port is shared, not handed over: docs/deploy/restart.md.)
    if (!process.env.PARLEY_TEST_WORKERS) {
      assert.deepEqual(
        sockets.map((s) => s.reasons),
        sockets.map(() => []),
      );
    }
    const { code, signal, ms } = await term(a);
    assertClean(a, { code, signal });
    assert.ok(ms < 10000, `A drained in ${ms} ms`);
    // Everyone reconnects (to B, the only one left) and goes on sending there.
    const sentAtTerm = sockets.map((s) => s.sent);
    await waitUntil(() => sockets.every((s, i) => s.connected && s.sent >= sentAtTerm[i] + 5), {
      timeoutMs: 20000,
      what: "every client sending again, on B",
    });
    running = false;
    await Promise.all(loops);
    assert.ok(acked.size > beforeTerm, "messages acknowledged after the restart");
    for (const s of sockets) {
      // One lost transport each (WebSocket 1001, the poll's close packet, or a poll's next
      // request, on a new connection, meeting B, which does not know the session), never a
      // Socket.IO disconnect, after which socket.io-client would not reconnect.
      if (!process.env.PARLEY_TEST_WORKERS) assert.equal(s.reasons.length, 1, s.reasons.join());
      for (const r of s.reasons) assert.match(r, /^transport (close|error)$/);
    }

    // B's history: every acknowledged message, seqs 1..N without gaps or duplicates.
    const reader = chatSocket(b.url, ["websocket"], newUser("reader"), room);
    await waitUntil(() => reader.joined, { what: "reader joined on B" });
    const all = [];
    let before;
    for (;;) {
      const page = await reader.timeout(5000).emitWithAck("history", before ? { roomId: room, beforeSeq: before, limit: 100 } : { roomId: room, limit: 100 });
      assert.equal(page.ok, true, JSON.stringify(page));
      if (page.messages.length === 0) break;
      all.unshift(...page.messages);
      before = page.messages[0].seq;
      if (before <= 1) break;
    }
    const seqs = all.map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), "gap-free seqs");
    const byId = new Map(all.map((m) => [m.id, m.seq]));
    const lost = [...acked].filter(([id, seq]) => byId.get(id) !== seq);
    assert.deepEqual(lost, [], `acknowledged messages missing from B (of ${acked.size})`);
    for (const s of sockets) s.close();
    assertClean(b, await term(b));
  });
});
