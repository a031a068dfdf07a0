// Session churn: 10,000 Engine.IO sessions opened and dropped in mixed ways, at most 200 at a
// time, against one eio_echo with a short heartbeat (1000/2000 ms). Afterwards /stats must come back
// to zero sessions and at most one connection (the /stats request itself), a fresh client must
// still get its echo, and the server must stop cleanly (under ASan: LeakSanitizer finds nothing).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "engine.io-client";
import {
  startEcho,
  request,
  pollUrl,
  wsUrl,
  getStats,
  waitIdle,
  pollingHandshake,
  WsClient,
  withTimeout,
  pool,
  rst,
} from "./util.mjs";

const SESSIONS = 10000;
const CONCURRENCY = 200;
const OP_TIMEOUT = 10000;
// A short heartbeat, so that abandoned sessions end by ping timeout within seconds. Not shorter:
// the raw clients below never answer pings, so each of their operations must fit in
// PING_INTERVAL + PING_TIMEOUT although this one node process drives 200 of them at once (and
// ctest may run other test files beside it).
const PING_INTERVAL = 1000;
const PING_TIMEOUT = 2000;

// engine.io-client: open, one echo, then close(), resolving when the echo came back.
function eioClient(srv, opts, { waitUpgrade = false } = {}) {
  return new Promise((resolve, reject) => {
    const socket = new Socket(srv.url, opts);
    const timer = setTimeout(() => {
      fail(new Error("engine.io-client operation timed out"));
    }, OP_TIMEOUT);
    let done = false;
    function fail(err) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off("close");
      socket.close();
      reject(err);
    }
    function ping() {
      socket.send("churn");
    }
    socket.on("open", () => {
      if (!waitUpgrade) ping();
    });
    socket.on("upgrade", () => {
      if (waitUpgrade) ping();
    });
    socket.on("upgradeError", (e) => fail(new Error(`upgrade error: ${e.message}`)));
    socket.on("message", (m) => {
      if (m !== "churn") return fail(new Error(`unexpected message ${m}`));
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off("close");
      socket.close();
      resolve();
    });
    socket.on("error", (e) => fail(new Error(`client error: ${e?.message ?? e}`)));
    socket.on("close", (reason) => fail(new Error(`closed early: ${reason}`)));
  });
}

async function rawWs(srv, sid) {
  const c = new WsClient(wsUrl(srv, sid));
  try {
    await withTimeout(c.opened, OP_TIMEOUT, "websocket open");
  } catch (e) {
    c.terminate();
    throw e;
  }
  return c;
}

async function rawWsSession(srv) {
  const c = await rawWs(srv);
  try {
    const first = await c.next(OP_TIMEOUT);
    if (typeof first !== "string" || !first.startsWith("0")) throw new Error(`bad open packet ${first}`);
  } catch (e) {
    c.terminate();
    throw e;
  }
  return c;
}

const MODES = [
  // clean close over polling: engine.io-client sends "1" in a POST
  ["eio-client polling close()", (srv) => eioClient(srv, { transports: ["polling"] })],
  // clean close over websocket: close frame
  ["eio-client websocket close()", (srv) => eioClient(srv, { transports: ["websocket"] })],
  // full upgrade, then clean close
  [
    "eio-client upgrade then close()",
    (srv) => eioClient(srv, { transports: ["polling", "websocket"] }, { waitUpgrade: true }),
  ],
  // abrupt: TCP RST on an open websocket session
  [
    "raw websocket RST",
    async (srv) => {
      const c = await rawWsSession(srv);
      c.reset();
    },
  ],
  // abrupt: FIN without a close frame
  [
    "raw websocket terminate()",
    async (srv) => {
      const c = await rawWsSession(srv);
      c.terminate();
    },
  ],
  // a polling session that never polls again: ends by ping timeout
  [
    "polling ping timeout",
    async (srv) => {
      await pollingHandshake(srv);
    },
  ],
  // a pending GET killed by a TCP RST; the session then times out (or is closed at once)
  [
    "polling pending GET RST",
    async (srv) => {
      const { sid } = await pollingHandshake(srv);
      let req;
      const g = request(pollUrl(srv, sid), { onRequest: (r) => (req = r), timeoutMs: OP_TIMEOUT });
      g.catch(() => {});
      await withTimeout(
        new Promise((resolve) => (req.writableFinished ? resolve() : req.once("finish", resolve))),
        OP_TIMEOUT,
        "the GET to be written",
      );
      if (!rst(req.socket)) req.destroy();
    },
  ],
  // mid-upgrade: pending GET + websocket probe, then both dropped
  [
    "mid-upgrade drop",
    async (srv, i) => {
      const { sid } = await pollingHandshake(srv);
      let req;
      const g = request(pollUrl(srv, sid), { onRequest: (r) => (req = r), timeoutMs: OP_TIMEOUT });
      g.catch(() => {});
      const c = await rawWs(srv, sid);
      try {
        c.send("2probe");
        const m = await c.next(OP_TIMEOUT);
        if (m !== "3probe") throw new Error(`expected 3probe, got ${m}`);
      } finally {
        if (i % 2) c.reset();
        else c.terminate();
        if (!rst(req.socket)) req.destroy();
      }
    },
  ],
  // polling session closed by the client's "1"
  [
    "polling closed by 1",
    async (srv) => {
      const { sid } = await pollingHandshake(srv);
      const r = await request(pollUrl(srv, sid), { method: "POST", body: "1", timeoutMs: OP_TIMEOUT });
      if (r.status !== 200) throw new Error(`POST 1 → ${r.status} ${r.text}`);
    },
  ],
];

describe("session churn", () => {
  let srv;
  before(async () => {
    srv = await startEcho(["--ping-interval", String(PING_INTERVAL), "--ping-timeout", String(PING_TIMEOUT)]);
  });
  after(async () => {
    if (srv && srv.process.exitCode === null && srv.process.signalCode === null) await srv.stop();
  });

  test(`${SESSIONS} sessions opened and dropped, ${CONCURRENCY} at a time`, { timeout: 60000 }, async (t) => {
    const failures = [];
    const perMode = MODES.map(() => 0);
    let peak = { sessions: 0, connections: 0 };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        try {
          const s = await getStats(srv);
          peak = { sessions: Math.max(peak.sessions, s.sessions), connections: Math.max(peak.connections, s.connections) };
        } catch (e) {
          failures.push(`/stats during churn: ${e.message}`);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    const t0 = Date.now();
    await pool(SESSIONS, CONCURRENCY, async (i) => {
      const m = i % MODES.length;
      const [name, fn] = MODES[m];
      const start = Date.now();
      try {
        await withTimeout(fn(srv, i), OP_TIMEOUT + 2000, name);
        perMode[m]++;
      } catch (e) {
        failures.push(`#${i} ${name} (after ${Date.now() - start} ms, at ${start - t0} ms): ${e.message}`);
      }
    }, { rampMs: 2 });
    sampling = false;
    await sampler;
    const elapsed = Date.now() - t0;
    t.diagnostic(`churn took ${elapsed} ms; peak ${JSON.stringify(peak)}`);
    t.diagnostic(MODES.map(([name], m) => `${name}: ${perMode[m]}`).join(", "));
    assert.deepEqual(failures.slice(0, 20), [], `${failures.length} failed operations`);
    const idle = await waitIdle(srv, { timeoutMs: 20000 });
    t.diagnostic(`idle after ${Date.now() - t0} ms: ${JSON.stringify(idle)}`);
  });

  test("the server still echoes after the churn", async () => {
    await eioClient(srv, { transports: ["polling", "websocket"] }, { waitUpgrade: true });
    await waitIdle(srv);
  });

  test("clean shutdown (no leaks under ASan)", async () => {
    let idleErr;
    try {
      await waitIdle(srv);
    } catch (e) {
      idleErr = e;
    }
    await srv.stop();
    if (idleErr) throw idleErr;
  });
});
