// The HTTP API at scale (docs/HTTP-API.md): 5,000 SSE streams and 5,000 held long-polls on
// one process, all on one room, and every message delivered to all of them — the issue's
// "done when". Then a slow SSE consumer: a stream whose client stops reading is ended by
// the server once more than 4 MiB wait for it, and reconnecting with Last-Event-ID gives
// exactly the messages it missed; and a resume whose replay is over 4 MiB, read at full
// speed, is not mistaken for a slow client (the replay waits for the stream to drain).
//
// Streams and polls are raw node:http requests (agent: false, one socket each), parsed by
// sse.mjs's SseParser (the WHATWG event-stream rules). Every wait is bounded; /healthz
// (sseStreams, longPolls) tells when the server has registered what was opened.
//
// File descriptors: 10,000 client sockets here and 10,000 in parley, under a `ulimit -n`
// of 20,000 per process. Opening goes in batches (the listen backlog is 4096).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import { io } from "socket.io-client";
import { sanitized } from "../lib/server.mjs";
import { connected, newRoom, newUser, request, startParley, waitUntil, withTimeout } from "./util.mjs";
import { SseParser } from "./sse.mjs";

const KEY = "scale-test-api-key-0123456789";
const STREAMS = 5000;
const POLLS = 5000;
const BATCH = 250; // requests opened at once
// Releases run in a few seconds; the ASan build is several times slower at everything.
const SLOW = sanitized ? 4 : 1;

// ---- raw clients ----

// An SSE stream: GET url (path on srv) with headers; resolves once the response head is
// in. .events (dispatched events), .comments, .parser.retry, .ended (a promise resolved
// at the end of the response or connection), .close().
function openStream(srv, path, headers = {}, { onEvent } = {}) {
  return new Promise((resolve, reject) => {
    const st = { events: [], comments: 0, status: 0, headers: {}, done: false, error: undefined };
    st.parser = new SseParser(
      (ev) => {
        st.events.push(ev);
        onEvent?.(ev, st);
      },
      () => st.comments++,
    );
    let endResolve;
    st.ended = new Promise((r) => (endResolve = r));
    const finish = (err) => {
      if (st.done) return;
      st.done = true;
      st.error = err;
      endResolve();
    };
    const req = http.request(`${srv.url}${path}`, { headers, agent: false });
    st.req = req;
    st.close = () => {
      req.destroy();
      finish();
    };
    const timer = setTimeout(() => req.destroy(new Error(`no answer to GET ${path}`)), 20000 * SLOW);
    req.on("error", (e) => {
      clearTimeout(timer);
      finish(e);
      reject(e);
    });
    req.on("response", (res) => {
      clearTimeout(timer);
      st.res = res;
      st.status = res.statusCode;
      st.headers = res.headers;
      res.setEncoding("utf8");
      res.on("data", (t) => st.parser.push(t));
      res.on("end", () => finish());
      res.on("error", (e) => finish(e));
      res.on("close", () => finish());
      resolve(st);
    });
    req.end();
  });
}

// A request whose answer may be held (a long-poll): resolves {status, headers, body}.
async function get(srv, path, headers = {}, { agent = false, timeoutMs = 40000 * SLOW } = {}) {
  const r = await request(`${srv.url}${path}`, { headers, agent, timeoutMs });
  return { status: r.status, headers: r.headers, body: r.text };
}

async function post(srv, room, body, headers = { "x-api-key": KEY }) {
  const r = await request(`${srv.url}/api/rooms/${encodeURIComponent(room)}/messages`, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json", ...headers },
    timeoutMs: 20000 * SLOW,
  });
  assert.equal(r.status, 201, `POST answered ${r.status}: ${r.text}`);
  return JSON.parse(r.text);
}

async function counts(srv) {
  const r = await request(`${srv.url}/healthz`, { timeoutMs: 10000 * SLOW });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

function waitCounts(srv, streams, polls, timeoutMs = 30000 * SLOW) {
  return waitUntil(
    async () => {
      const h = await counts(srv);
      return h.sseStreams === streams && h.longPolls === polls ? h : false;
    },
    { timeoutMs, intervalMs: 50, what: `/healthz sseStreams == ${streams} and longPolls == ${polls}` },
  );
}

// The TCP state of the server's side of the connection from clientPort (Linux
// /proc/net/tcp), or undefined when it is gone.
const ESTABLISHED = "01";
function tcpState(serverPort, clientPort) {
  const hex = (p) => p.toString(16).toUpperCase().padStart(4, "0");
  const local = `0100007F:${hex(serverPort)}`;
  const remote = `0100007F:${hex(clientPort)}`;
  for (const line of fs.readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[2] === remote) return f[3];
  }
  return undefined;
}

// Follows a stream as an EventSource does: connects with Last-Event-ID: from, and
// whenever the server ends the stream reconnects to the same URL with the newest id (at
// once: the test does not wait out the retry delay). .events() are those of every
// connection, in order; .conns the connections (each also added to `open`).
class Follower {
  constructor(srv, path, headers, from, open, maxConnections = 50) {
    Object.assign(this, { srv, path, headers, lastId: from, open, maxConnections });
    this.conns = [];
    this.error = undefined;
    this.closed = false;
  }

  async connect() {
    if (this.conns.length >= this.maxConnections) {
      this.error = new Error(`still reconnecting after ${this.maxConnections} connections`);
      return;
    }
    const headers = { ...this.headers, ...(this.lastId ? { "last-event-id": this.lastId } : {}) };
    let st;
    try {
      st = await openStream(this.srv, this.path, headers);
    } catch (e) {
      this.error = e;
      return;
    }
    this.open.push(st);
    this.conns.push(st);
    if (st.status !== 200) {
      this.error = new Error(`reconnection answered ${st.status}`);
      return;
    }
    st.ended.then(() => {
      if (st.parser.lastEventId) this.lastId = st.parser.lastEventId;
      if (!this.closed) this.connect();
    });
  }

  events() {
    return this.conns.flatMap((c) => c.events);
  }

  // Until an event with id `seq` arrived (on any connection).
  until(seq, timeoutMs) {
    return waitUntil(
      () => {
        if (this.error) throw this.error;
        return this.events().some((e) => e.id === String(seq));
      },
      { timeoutMs, what: `event ${seq} (${this.conns.length} connections)` },
    );
  }

  close() {
    this.closed = true;
    for (const c of this.conns) c.close();
  }
}

// ---- the tests ----

describe("HTTP API at scale", () => {
  let srv;
  const streams = [];
  const sockets = [];

  before(async () => {
    srv = await startParley(["--api-key", KEY, "--sse-heartbeat", "2"]);
  });

  after(async () => {
    for (const s of streams) s.close();
    for (const s of sockets) s.disconnect();
    if (!srv) return;
    try {
      await srv.stop({ timeoutMs: 30000 * SLOW });
    } finally {
      srv.cleanup();
    }
  });

  test(`${STREAMS} SSE streams and ${POLLS} held long-polls on one room receive every message`, { timeout: 180000 * SLOW }, async () => {
    const room = newRoom("scale");
    const base = `/api/rooms/${encodeURIComponent(room)}`;
    const t0 = Date.now();
    const phase = (what) => console.log(`# ${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // Half the streams with the API key, half with a user token in the query (as an
    // EventSource would); they all see the same events.
    const viewer = newUser("Viewer");
    let newMessages = 0; // newMessage events over all streams
    for (let i = 0; i < STREAMS; i += BATCH) {
      const batch = [];
      for (let j = i; j < Math.min(STREAMS, i + BATCH); j++) {
        const p =
          j % 2 === 0
            ? openStream(srv, `${base}/events`, { "x-api-key": KEY }, { onEvent: (ev) => (newMessages += ev.type === "newMessage") })
            : openStream(srv, `${base}/events?token=${viewer.token}`, {}, { onEvent: (ev) => (newMessages += ev.type === "newMessage") });
        batch.push(p);
      }
      streams.push(...(await Promise.all(batch)));
    }
    for (const s of streams) {
      assert.equal(s.status, 200);
      assert.match(s.headers["content-type"], /^text\/event-stream/);
      assert.equal(s.headers["cache-control"], "no-cache");
      assert.equal(s.headers["x-accel-buffering"], "no");
    }
    await waitCounts(srv, STREAMS, 0);
    phase(`${STREAMS} streams open`);

    // The room is empty: every poll waits (after=0 is the room's last seq).
    const polls = [];
    for (let i = 0; i < POLLS; i += BATCH) {
      for (let j = i; j < Math.min(POLLS, i + BATCH); j++) {
        const path = `${base}/messages?after=0&wait=30`;
        polls.push(j % 2 === 0 ? get(srv, path, { "x-api-key": KEY }) : get(srv, `${path}&token=${viewer.token}`));
      }
      await waitCounts(srv, STREAMS, Math.min(POLLS, i + BATCH));
    }
    phase(`${POLLS} polls held`);
    // Every stream starts with the reconnection hint.
    await waitUntil(() => streams.every((s) => s.parser.retry === 2000), { what: "retry: 2000 on every stream" });

    // A Socket.IO user joins: the streams see userJoined (presence is live only, no id).
    const talker = newUser("Talker");
    const sock = io(srv.url, { auth: { token: talker.token }, transports: ["websocket"], reconnection: false, forceNew: true });
    sockets.push(sock);
    await connected(sock, 10000 * SLOW);
    const join = await sock.timeout(10000 * SLOW).emitWithAck("joinRoom", { roomId: room });
    assert.equal(join.ok, true, JSON.stringify(join));

    // Message 1 over REST. Its 201 comes once it was sent to everyone: every held poll is
    // answered with it alone.
    const sent = [];
    const m1 = { text: "one (REST, API key)", userId: "deploy-bot", username: "Deploy bot" };
    const a1 = await post(srv, room, m1);
    sent.push({ id: a1.id, seq: a1.seq, timestamp: a1.timestamp, roomId: room, userId: m1.userId, username: m1.username, text: m1.text });
    const answers = await withTimeout(Promise.all(polls), 30000 * SLOW, "every long-poll answered");
    phase("every poll answered");
    for (const [i, a] of answers.entries()) {
      assert.equal(a.status, 200, `poll ${i}: ${a.body}`);
      assert.match(a.headers["content-type"], /^application\/json/);
      assert.deepEqual(JSON.parse(a.body), [sent[0]], `poll ${i}`);
    }
    assert.equal((await counts(srv)).longPolls, 0);

    // Message 2 over Socket.IO, the rest over REST (one with a user token: attributed to
    // the token's user whatever the body says).
    const a2 = await sock.timeout(10000 * SLOW).emitWithAck("sendMessage", { roomId: room, text: "two (socket.io)" });
    assert.equal(a2.ok, true, JSON.stringify(a2));
    sent.push({ id: a2.id, seq: a2.seq, timestamp: a2.timestamp, roomId: room, userId: talker.userId, username: talker.name, text: "two (socket.io)" });
    const poster = newUser("Poster");
    const a3 = await post(srv, room, { text: "three (REST, user token)", userId: "spoofed" }, { authorization: `Bearer ${poster.token}` });
    sent.push({ id: a3.id, seq: a3.seq, timestamp: a3.timestamp, roomId: room, userId: poster.userId, username: poster.name, text: "three (REST, user token)" });
    for (const text of ["four: ünïcødé ✓ 🎉", "five\nwith a newline"]) {
      const a = await post(srv, room, { text });
      sent.push({ id: a.id, seq: a.seq, timestamp: a.timestamp, roomId: room, userId: "api", username: "api", text });
    }
    assert.deepEqual(
      sent.map((m) => m.seq),
      [1, 2, 3, 4, 5],
    );

    await waitUntil(() => newMessages === STREAMS * sent.length, {
      timeoutMs: 30000 * SLOW,
      intervalMs: 20,
      what: `${STREAMS * sent.length} newMessage events (have ${newMessages})`,
    });
    phase("every stream has every message");
    const joined = { userId: talker.userId, username: talker.name, roomId: room };
    for (const [i, s] of streams.entries()) {
      assert.equal(s.done, false, `stream ${i} still open`);
      const evs = s.events;
      assert.deepEqual(
        evs.map((e) => e.type),
        ["userJoined", "newMessage", "newMessage", "newMessage", "newMessage", "newMessage"],
        `stream ${i}`,
      );
      assert.equal(evs[0].hasId, false, "userJoined carries no id");
      assert.deepEqual(JSON.parse(evs[0].data), joined);
      for (const [k, m] of sent.entries()) {
        const e = evs[k + 1];
        assert.equal(e.id, String(m.seq), `stream ${i}: id of message ${k + 1}`);
        assert.deepEqual(JSON.parse(e.data), m, `stream ${i}: message ${k + 1}`);
      }
    }

    // Polling again from the first message, without waiting: the rest, in order. A
    // keep-alive agent bounds the sockets used.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    try {
      const again = [];
      for (let i = 0; i < POLLS; i += BATCH) {
        const batch = [];
        for (let j = i; j < Math.min(POLLS, i + BATCH); j++) {
          const path = `${base}/messages?after=${sent[0].seq}`;
          batch.push(j % 2 === 0 ? get(srv, path, { "x-api-key": KEY }, { agent }) : get(srv, `${path}&token=${viewer.token}`, {}, { agent }));
        }
        again.push(...(await Promise.all(batch)));
      }
      for (const [i, a] of again.entries()) {
        assert.equal(a.status, 200, `re-poll ${i}: ${a.body}`);
        assert.deepEqual(JSON.parse(a.body), sent.slice(1), `re-poll ${i}`);
      }
    } finally {
      agent.destroy();
    }
    phase("re-polls answered");

    // The heartbeat (every 2 s here) reached every stream.
    await waitUntil(() => streams.every((s) => s.comments > 0), { timeoutMs: 10000 * SLOW, what: "a heartbeat on every stream" });

    // Half the streams hang up; the server lets them go. Stopping it (after) ends the rest.
    for (const s of streams.slice(0, STREAMS / 2)) s.close();
    await waitCounts(srv, STREAMS / 2, 0);
    // The Socket.IO user leaves: the open streams see userLeft.
    sock.disconnect();
    const rest = streams.slice(STREAMS / 2);
    await waitUntil(() => rest.every((s) => s.events.length === 2 + sent.length), {
      timeoutMs: 20000 * SLOW,
      what: "userLeft on every open stream",
    });
    for (const s of rest) {
      assert.equal(s.events.at(-1).type, "userLeft");
      assert.deepEqual(JSON.parse(s.events.at(-1).data), joined);
    }
    assert.equal((await counts(srv)).longPolls, 0);
    const stopped = srv.stop({ timeoutMs: 30000 * SLOW });
    await withTimeout(
      Promise.all(rest.map((s) => s.ended)),
      20000 * SLOW,
      "the server's stop to end the open streams",
    );
    await stopped;
    for (const s of rest) assert.equal(s.events.length, 2 + sent.length, "nothing after userLeft");
    srv.cleanup();
    srv = undefined;
    phase("stopped");
  });
});

describe("SSE slow consumer", () => {
  const MAX_TEXT = 60000;
  const TEXT = 50000; // ~50 KB frames: ~170 of them fill the kernel buffers and 4 MiB more
  const CAP = 600; // messages posted at most before giving up (~30 MB)
  let srv;
  const open = [];

  before(async () => {
    srv = await startParley(["--api-key", KEY, "--max-text", String(MAX_TEXT), "--store", "memory"]);
  });

  after(async () => {
    for (const s of open) s.close();
    if (!srv) return;
    try {
      await srv.stop({ timeoutMs: 30000 * SLOW });
    } finally {
      srv.cleanup();
    }
  });

  // The client reads again either at once (while the server still flushes what it had
  // queued before closing) or only once the server has closed the connection, dropping
  // what was still queued (then the last event may arrive cut, and is discarded).
  for (const late of [false, true]) {
    const when = late ? "after the server closed the connection" : "at once";
    test(`a stream that does not read is ended past 4 MiB; reading again ${when}, Last-Event-ID resumes with no gap and no duplicate`, { timeout: 120000 * SLOW }, async () => {
      const room = newRoom("slow");
      const base = `/api/rooms/${encodeURIComponent(room)}`;
      const text = (n) => `${String(n).padStart(6, "0")} ${"x".repeat(TEXT - 7)}`;

      // Some history first: the stream resumes from the middle of it.
      const sent = [];
      for (let n = 1; n <= 3; n++) sent.push(await post(srv, room, { text: text(n) }));

      // The previous test's streams are gone.
      for (const st of open.splice(0)) st.close();
      await waitCounts(srv, 0, 0);
      const slow = await openStream(srv, `${base}/events?lastEventId=1`, { "x-api-key": KEY });
      open.push(slow);
      // A fast stream on the same room keeps up with everything.
      const fast = await openStream(srv, `${base}/events?lastEventId=0`, { "x-api-key": KEY });
      open.push(fast);
      await waitCounts(srv, 2, 0);
      await waitUntil(() => slow.events.length === 2, { what: "the slow stream's replay of 2..3" });
      slow.res.pause(); // the client stops reading

      // Post until the server gives up on the slow stream.
      let n = 3;
      for (;;) {
        assert.ok(n < CAP, `the slow stream was not ended after ${CAP} messages of ${TEXT} bytes`);
        for (let k = 0; k < 10; k++) sent.push(await post(srv, room, { text: text(++n) }));
        if ((await counts(srv)).sseStreams === 1) break;
      }
      const endedAt = n;
      assert.ok(endedAt * TEXT > 4 << 20, `ended after only ${endedAt} messages`);
      // More while it is gone: the reconnection must fetch them.
      for (let k = 0; k < 5; k++) sent.push(await post(srv, room, { text: text(++n) }));
      const last = n;
      assert.match(srv.stderr(), /too slow/);

      // The client reads on: what reached it before the end, then the end (an event cut in
      // the middle is discarded by the parser, as an EventSource does).
      if (late) {
        await waitUntil(() => tcpState(srv.port, slow.req.socket.localPort) !== ESTABLISHED, {
          timeoutMs: 15000 * SLOW,
          what: "the server to close the slow stream's connection",
        });
      }
      slow.res.resume();
      await withTimeout(slow.ended, 20000 * SLOW, "the end of the slow stream");
      const got = slow.events.map((e) => Number(e.id));
      assert.ok(got.length < last - 1, `the slow stream got ${got.length} of ${last - 1}: it was not cut short`);
      assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => i + 2), "in order, no gap, from 2");
      for (const e of slow.events) assert.equal(JSON.parse(e.data).text, text(Number(e.id)));
      const resumeFrom = slow.parser.lastEventId;
      console.log(`# slow stream ended after ${endedAt} posts; it got ${got[0]}..${got.at(-1)}; resuming from ${resumeFrom} to ${last}`);
      assert.equal(resumeFrom, String(got.at(-1)));

      // Reconnect as an EventSource does (same URL, newer Last-Event-ID header: the header
      // wins over the query parameter), again whenever the stream ends: the rest, exactly
      // once, then live. (Should the stream end again, catching up takes more than one
      // connection; nothing may be lost or repeated either way.)
      const follower = new Follower(srv, `${base}/events?lastEventId=1`, { "x-api-key": KEY }, resumeFrom, open);
      await follower.connect();
      try {
        await follower.until(last, 30000 * SLOW);
        sent.push(await post(srv, room, { text: text(++n) }));
        await follower.until(n, 10000 * SLOW);
      } finally {
        follower.close();
      }
      console.log(`# caught up in ${follower.conns.length} connection(s)`);
      const resumed = follower.events().map((e) => Number(e.id));
      assert.deepEqual(
        [...got, ...resumed],
        Array.from({ length: n - 1 }, (_, i) => i + 2),
        "2..n exactly once across the connections",
      );
      for (const e of follower.events()) {
        const m = JSON.parse(e.data);
        assert.equal(m.seq, Number(e.id));
        assert.equal(m.id, sent[m.seq - 1].id);
        assert.equal(m.text, text(m.seq));
      }
      // The fast stream saw everything, live, in order.
      await waitUntil(() => fast.events.length === n, { timeoutMs: 30000 * SLOW, what: "the fast stream's messages" });
      assert.deepEqual(
        fast.events.map((e) => Number(e.id)),
        Array.from({ length: n }, (_, i) => i + 1),
      );
      assert.equal(fast.done, false);
    });
  }

  // docs/HTTP-API.md: with Last-Event-ID "the stream first replays every stored message
  // after that seq, then goes live". A client that reads as fast as it can is not slow,
  // even when the backlog is larger than the slow-reader bound: the replay pauses while
  // its stream drains, and the stream must stay open and go live.
  test("a resume whose replay is over 4 MiB, read at full speed, stays open and goes live", { timeout: 60000 * SLOW }, async () => {
    for (const st of open.splice(0)) st.close();
    await waitCounts(srv, 0, 0);
    const room = newRoom("backlog");
    const base = `/api/rooms/${encodeURIComponent(room)}`;
    const COUNT = 100; // 100 x 50 KB: ~5 MB of backlog
    for (let i = 1; i <= COUNT; i++) await post(srv, room, { text: `${i} ${"y".repeat(TEXT)}` });
    const st = await openStream(srv, `${base}/events`, { "x-api-key": KEY, "last-event-id": "0" });
    open.push(st);
    const upTo = (seq, what) =>
      waitUntil(
        () => {
          if (st.events.length >= seq) return true;
          if (st.done) throw new Error(`the stream ended after ${st.events.length} of ${seq} events (${what})`);
          return false;
        },
        { timeoutMs: 20000 * SLOW, what },
      );
    await upTo(COUNT, "the replay");
    await post(srv, room, { text: "live" });
    await upTo(COUNT + 1, "the live message");
    assert.deepEqual(
      st.events.map((e) => Number(e.id)),
      Array.from({ length: COUNT + 1 }, (_, i) => i + 1),
    );
    assert.equal(st.done, false);
  });
});
