// The parley program's transport protections, with the official client:
// - --cors-origins also refuses (403) browsers of other sites at the Socket.IO handshake,
//   over WebSocket and polling; its own origin, the listed ones and non-browser clients
//   (no Origin) connect;
// - --max-connections-per-ip caps one address's sessions (503 over it) and leaves other
//   addresses alone; --handshake-rate refuses a fast handshaker with 429;
// - X-Forwarded-For counts only from --trusted-proxies.
// The mechanics are tested in depth on eio_echo (tests/integration/hostile/limits); here
// the flags of the chat server reach them.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { io } from "socket.io-client";

import { handshakeRequest } from "../lib/raw.mjs";
import { connected, newUser, request, startParley } from "./util.mjs";

const POLL = "/socket.io/?EIO=4&transport=polling";
const T = { timeout: 30000 };

async function wsStatus(port, origin) {
  const sock = net.connect({ port, host: "127.0.0.1" });
  await new Promise((r) => sock.once("connect", r));
  const extra = origin ? [["Origin", origin]] : [];
  sock.write(handshakeRequest({ path: "/socket.io/?EIO=4&transport=websocket", host: `127.0.0.1:${port}`, extra }).raw);
  const head = await new Promise((r) => sock.once("data", (d) => r(d.toString("latin1"))));
  sock.destroy();
  return Number(head.split(" ")[1]);
}

describe("parley --cors-origins: the Origin check", () => {
  let srv;
  before(async () => {
    srv = await startParley(["--store", "memory", "--cors-origins", "https://good.example"]);
  });
  after(async () => {
    await srv?.stop();
    srv?.cleanup();
  });

  it("refuses another site with 403 and lets the listed one, the page's own origin and non-browsers in", T, async () => {
    assert.equal(await wsStatus(srv.port, "https://evil.example"), 403);
    assert.equal(await wsStatus(srv.port, "https://good.example"), 101);
    assert.equal(await wsStatus(srv.port, `http://127.0.0.1:${srv.port}`), 101);
    assert.equal(await wsStatus(srv.port, null), 101);
    const evil = await request(`${srv.url}${POLL}`, { headers: { origin: "https://evil.example" } });
    assert.equal(evil.status, 403);
    const user = newUser("origin");
    const s = io(srv.url, { forceNew: true, reconnection: false, auth: { token: user.token } });
    try {
      await connected(s); // node's client sends no Origin
    } finally {
      s.close();
    }
  });
});

describe("parley --max-connections-per-ip / --handshake-rate / --trusted-proxies", () => {
  let srv;
  before(async () => {
    srv = await startParley([
      "--store", "memory",
      "--max-connections-per-ip", "2",
      "--handshake-rate", "50",
      "--handshake-burst", "6",
      "--trusted-proxies", "127.0.0.9",
    ]);
  });
  after(async () => {
    await srv?.stop();
    srv?.cleanup();
  });

  const handshake = (localAddress, headers = {}) => request(`${srv.url}${POLL}`, { localAddress, headers });

  it("one address gets 2 sessions, the third is refused with 503; another address is served", T, async () => {
    assert.equal((await handshake("127.0.0.2")).status, 200);
    assert.equal((await handshake("127.0.0.2")).status, 200);
    const over = await handshake("127.0.0.2");
    assert.equal(over.status, 503);
    assert.equal((await handshake("127.0.0.3")).status, 200);
  });

  it("a fast handshaker is refused with 429", T, async () => {
    const statuses = [];
    for (let i = 0; i < 10; i++) statuses.push((await handshake(`127.0.0.${20 + (i % 2)}`, {})).status);
    // Sessions stay open (polling, never closed here): the cap of 2 per address is met
    // first; the rate is checked against a fresh address below.
    const rate = [];
    for (let i = 0; i < 10; i++) {
      const r = await request(`${srv.url}/socket.io/?EIO=4&transport=polling`, { localAddress: "127.0.0.30" });
      rate.push(r.status);
      if (r.status === 200) {
        const sid = JSON.parse(r.text.slice(1)).sid;
        await request(`${srv.url}${POLL}&sid=${sid}`, { method: "POST", body: "1", localAddress: "127.0.0.30" });
      }
    }
    assert.ok(rate.includes(429), rate.join(" "));
    assert.ok(statuses.includes(503), statuses.join(" "));
  });

  it("X-Forwarded-For is believed from the trusted proxy only", T, async () => {
    for (const client of ["198.51.100.7", "198.51.100.8"]) {
      assert.equal((await handshake("127.0.0.9", { "x-forwarded-for": client })).status, 200);
      assert.equal((await handshake("127.0.0.9", { "x-forwarded-for": client })).status, 200);
      assert.equal((await handshake("127.0.0.9", { "x-forwarded-for": client })).status, 503);
    }
    assert.equal((await handshake("127.0.0.10", { "x-forwarded-for": "10.1.1.1" })).status, 200);
    assert.equal((await handshake("127.0.0.10", { "x-forwarded-for": "10.1.1.2" })).status, 200);
    assert.equal((await handshake("127.0.0.10", { "x-forwarded-for": "10.1.1.3" })).status, 503);
  });
});
