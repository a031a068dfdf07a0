// Clients that take more than their share, against eio_echo with the limits switched on:
// peers that send but never read (WebSocket pings, pipelined HTTP), oversized polling
// POSTs, cross-site browsers, and one address opening too many sessions or handshaking
// too fast. Each test checks what the attacker gets (a bounded server, a refusal with a
// status) and that everyone else is unaffected.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import net from "node:net";
import { after, before, describe, it } from "node:test";

import { request as httpRequest } from "../lib/http.mjs";
import { startServer } from "../lib/server.mjs";
import { sleep, waitUntil } from "../lib/wait.mjs";
import { POLL_PATH, WS_PATH, handshakeRequest, ping, pollOpen, pollPost, request, stats } from "./util.mjs";

const T = { timeout: 60000 };

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m[1]) * 1024;
}

// A raw connection that sends `request`, then keeps sending `chunk` for `ms` while never
// reading anything the server answers (its receive buffer fills and stays full).
async function floodWithoutReading(port, { request: req, chunk, ms }) {
  const sock = net.connect({ port, host: "127.0.0.1" });
  await new Promise((resolve, reject) => sock.once("connect", resolve).once("error", reject));
  sock.on("error", () => {});
  if (req) {
    sock.write(req);
    await new Promise((resolve) => sock.once("data", resolve)); // the 101, then stop reading
  }
  sock.pause();
  const end = Date.now() + ms;
  let sent = 0;
  while (Date.now() < end && !sock.destroyed) {
    // Keep a little in the client's own buffer: the server decides how much it takes.
    if (sock.writableLength < 1 << 20) {
      sock.write(chunk);
      sent += chunk.length;
    }
    await sleep(1);
  }
  return { sock, sent };
}

describe("output to peers that never read is bounded", () => {
  let srv;
  before(async () => {
    srv = await startServer("eio_echo", ["--output-limit", "262144", "--send-timeout", "1500"]);
  });
  after(async () => {
    await srv?.stop();
  });

  it("WebSocket pings with no reading: memory stays put and the stalled connection is closed", T, async () => {
    const base = rssBytes(srv.process.pid);
    const pings = Buffer.concat(Array.from({ length: 256 }, () => ping(Buffer.alloc(125, 0x61))));
    const { sock, sent } = await floodWithoutReading(srv.port, {
      request: handshakeRequest({ path: WS_PATH }).raw,
      chunk: pings,
      ms: 3000,
    });
    const grown = rssBytes(srv.process.pid) - base;
    assert.ok(grown < 48 << 20, `server RSS grew by ${(grown / 1048576).toFixed(1)} MiB for ${(sent / 1048576).toFixed(1)} MiB of pings`);
    // Its output has not moved for longer than --send-timeout: the server closed it.
    await waitUntil(async () => (await stats(srv.port)).connections <= 1, { timeoutMs: 8000, what: "the stalled connection closed" });
    sock.destroy();
    assert.match(srv.stderr(), /output stalled for 1500 ms/);
  });

  it("pipelined HTTP requests with no reading: memory stays put", T, async () => {
    const base = rssBytes(srv.process.pid);
    const req = Buffer.from("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n".repeat(512));
    const { sock, sent } = await floodWithoutReading(srv.port, { chunk: req, ms: 3000 });
    const grown = rssBytes(srv.process.pid) - base;
    sock.destroy();
    assert.ok(grown < 48 << 20, `server RSS grew by ${(grown / 1048576).toFixed(1)} MiB for ${(sent / 1048576).toFixed(1)} MiB of requests`);
    assert.equal((await request(srv.port, { path: "/stats" })).status, 200);
  });

  it("a reader that is only slow is not cut off", T, async () => {
    // 2 MiB of echoes read at ~1 MiB/s: over the output limit for a while, never stalled.
    const sid = await pollOpen(srv.port);
    const body = "4" + "x".repeat(900000);
    assert.equal((await pollPost(srv.port, sid, body)).status, 200);
    await sleep(800);
    const res = await request(srv.port, { path: `${POLL_PATH}&sid=${sid}` });
    assert.equal(res.status, 200);
    assert.equal(res.text.length, body.length);
  });
});

describe("a polling POST above the advertised maxPayload", () => {
  let srv;
  before(async () => {
    srv = await startServer("eio_echo", ["--max-payload", "1000"]);
  });
  after(async () => {
    await srv?.stop();
  });

  it("1,000 bytes are taken; 1,001 are refused with 413", T, async () => {
    const sid = await pollOpen(srv.port);
    const open = JSON.parse((await request(srv.port, { path: POLL_PATH })).text.slice(1));
    assert.equal(open.maxPayload, 1000);
    assert.equal((await pollPost(srv.port, sid, "4" + "a".repeat(999))).status, 200);
    const sid2 = await pollOpen(srv.port);
    assert.equal((await pollPost(srv.port, sid2, "4" + "a".repeat(1000))).status, 413);
  });
});

describe("Origin check (--check-origin with --cors-origin)", () => {
  let srv;
  before(async () => {
    srv = await startServer("eio_echo", ["--cors-origin", "https://good.example", "--check-origin"]);
  });
  after(async () => {
    await srv?.stop();
  });

  async function wsStatus(origin) {
    const extra = origin ? [["Origin", origin]] : [];
    const sock = net.connect({ port: srv.port, host: "127.0.0.1" });
    await new Promise((r) => sock.once("connect", r));
    sock.write(handshakeRequest({ path: WS_PATH, host: `127.0.0.1:${srv.port}`, extra }).raw);
    const head = await new Promise((r) => sock.once("data", (d) => r(d.toString("latin1"))));
    sock.destroy();
    return Number(head.split(" ")[1]);
  }

  it("WebSocket: another site is refused with 403; the allowed, the same origin and no Origin pass", T, async () => {
    assert.equal(await wsStatus("https://evil.example"), 403);
    assert.equal(await wsStatus("https://good.example"), 101);
    assert.equal(await wsStatus(`http://127.0.0.1:${srv.port}`), 101);
    assert.equal(await wsStatus(null), 101);
  });

  it("polling: another site is refused with 403", T, async () => {
    const evil = await request(srv.port, { path: POLL_PATH, headers: [["Origin", "https://evil.example"]] });
    assert.equal(evil.status, 403);
    assert.match(evil.text, /"code":4/);
    const good = await request(srv.port, { path: POLL_PATH, headers: [["Origin", "https://good.example"]] });
    assert.equal(good.status, 200);
  });
});

describe("per-address limits", () => {
  let srv;
  before(async () => {
    srv = await startServer("eio_echo", [
      "--max-connections-per-ip", "3",
      "--handshake-rate", "20",
      "--handshake-burst", "8",
      "--trusted-proxy", "127.0.0.9",
    ]);
  });
  after(async () => {
    await srv?.stop();
  });

  const handshake = (localAddress, headers = []) =>
    httpRequest(`${srv.url}${POLL_PATH}`, { localAddress, headers: Object.fromEntries(headers) });
  const close = (sid, localAddress) =>
    httpRequest(`${srv.url}${POLL_PATH}&sid=${sid}`, { method: "POST", body: "1", localAddress });

  it("a fourth session from one address is refused with 503; other addresses are not affected", T, async () => {
    const sids = [];
    for (let i = 0; i < 3; i++) {
      const res = await handshake("127.0.0.2");
      assert.equal(res.status, 200);
      sids.push(JSON.parse(res.text.slice(1)).sid);
    }
    const over = await handshake("127.0.0.2");
    assert.equal(over.status, 503);
    assert.match(over.text, /too many sessions/);
    assert.equal((await handshake("127.0.0.3")).status, 200, "another address");
    await close(sids[0], "127.0.0.2");
    await waitUntil(async () => (await handshake("127.0.0.2")).status === 200, { what: "a slot freed" });
  });

  it("handshakes over the rate are refused with 429 and Retry-After", T, async () => {
    const statuses = [];
    for (let i = 0; i < 12; i++) {
      const res = await handshake("127.0.0.4");
      statuses.push(res.status);
      if (res.status === 200) await close(JSON.parse(res.text.slice(1)).sid, "127.0.0.4");
      if (res.status === 429) assert.equal(res.headers["retry-after"], "1");
    }
    assert.ok(statuses.includes(429), statuses.join(" "));
    assert.ok(statuses.slice(0, 3).every((s) => s === 200), statuses.join(" "));
  });

  it("X-Forwarded-For counts only from a trusted proxy", T, async () => {
    // From the trusted proxy: each forwarded client has its own allowance.
    for (const client of ["198.51.100.1", "198.51.100.2"]) {
      for (let i = 0; i < 3; i++)
        assert.equal((await handshake("127.0.0.9", [["X-Forwarded-For", `203.0.113.7, ${client}`]])).status, 200);
      assert.equal((await handshake("127.0.0.9", [["X-Forwarded-For", client]])).status, 503, client);
    }
    // From anyone else the header is ignored: the peer address counts.
    for (let i = 0; i < 3; i++)
      assert.equal((await handshake("127.0.0.5", [["X-Forwarded-For", `10.9.9.${i}`]])).status, 200);
    assert.equal((await handshake("127.0.0.5", [["X-Forwarded-For", "10.9.9.99"]])).status, 503);
  });
});

describe("log lines that clients provoke are rate limited", () => {
  let srv;
  before(async () => {
    srv = await startServer("eio_echo", []);
  });
  after(async () => {
    await srv?.stop();
  });

  it("300 malformed requests leave a bounded number of lines and say how many were dropped", T, async () => {
    const started = Date.now();
    for (let i = 0; i < 300; i++) {
      const res = await request(srv.port, { path: "/engine.io/?EIO=4&transport=polling", method: "GE T" }).catch(() => null);
      if (res) assert.equal(res.status, 400);
    }
    const seconds = Math.ceil((Date.now() - started) / 1000) + 1;
    await sleep(1100);
    // One more after the window, so the count of dropped lines is written (the server's
    // stderr reaches us on its own pipe, after the answer perhaps: wait for it).
    await request(srv.port, { path: "/", method: "GE T" }).catch(() => null);
    await waitUntil(() => /\(\d+ similar lines dropped\)/.test(srv.stderr()), { timeoutMs: 5000, what: "the dropped-lines count" });
    const lines = srv.stderr().split("\n").filter((l) => l.includes("request refused with 400"));
    assert.ok(lines.length >= 10, `${lines.length} lines`);
    assert.ok(lines.length <= 10 * (seconds + 2), `${lines.length} lines in ${seconds} s`);
  });
});
