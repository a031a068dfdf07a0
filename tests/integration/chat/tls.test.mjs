// Native TLS (net/tls.c, --tls-cert/--tls-key): the chat over https and wss with the
// official socket.io-client checking the certificate against a test CA, SSE and the probes
// over TLS (curl for /metrics and /readyz), ALPN, a certificate reloaded by SIGHUP while
// connections stay up, and hostile TLS input (garbage, an old protocol, a renegotiation,
// a handshake cut short), each of which costs its own connection only.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { io } from "socket.io-client";

import { SseParser } from "./sse.mjs";
import { POLLING, WS, connected, newRoom, newUser, rmTemp, sleep, startParley, tempDir, waitUntil } from "./util.mjs";
import { makePki } from "../lib/pki.mjs";
import { processExit } from "../lib/server.mjs";

const run = promisify(execFile);

// The certificate's subject CN a fresh TLS connection is shown.
function peerName(port, ca) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => {
      const cn = s.getPeerCertificate().subject.CN;
      s.end();
      resolve(cn);
    });
    s.on("error", reject);
  });
}

// Opens a raw TCP connection, writes bytes, and resolves with what came back once the
// server closed it (or rejects after ms).
function rawExchange(port, bytes, ms = 5000) {
  return new Promise((resolve, reject) => {
    const got = [];
    const s = net.connect(port, "127.0.0.1", () => s.write(bytes));
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("the server kept the connection open"));
    }, ms);
    s.on("data", (d) => got.push(d));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got));
    });
  });
}

function getHttps(url, ca, headers = {}) {
  return new Promise((resolve, reject) => {
    https.get(url, { ca, headers }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    }).on("error", reject);
  });
}

describe("TLS", () => {
  let dir, pki, srv;
  const sockets = [];

  before(async () => {
    dir = tempDir("tls");
    pki = makePki(dir, ["one", "two"]);
    fs.copyFileSync(path.join(dir, "one.pem"), path.join(dir, "cert.pem"));
    fs.copyFileSync(path.join(dir, "one.key"), path.join(dir, "key.pem"));
    // One process: a connection's TLS state cannot follow a request to another worker.
    srv = await startParley(["--store", "memory", "--workers", "1", "--tls-cert", path.join(dir, "cert.pem"), "--tls-key", path.join(dir, "key.pem")]);
    srv.httpsUrl = `https://localhost:${srv.port}`;
  });

  after(async () => {
    for (const s of sockets) s.disconnect();
    await srv?.stop();
    srv?.cleanup();
    rmTemp(dir);
  });

  function client(user, transport) {
    const s = io(srv.httpsUrl, { forceNew: true, reconnection: false, timeout: 5000, ca: pki.ca, auth: { token: user.token }, ...transport.opts });
    sockets.push(s);
    return s;
  }

  test("the chat over wss and https long-polling, with the certificate checked", async () => {
    const room = newRoom();
    const a = client(newUser("Alice"), WS);
    const b = client(newUser("Bob"), POLLING);
    await Promise.all([connected(a), connected(b)]);
    assert.equal(a.io.engine.transport.name, "websocket");
    assert.equal(b.io.engine.transport.name, "polling");
    for (const s of [a, b]) assert.equal((await s.timeout(5000).emitWithAck("joinRoom", { roomId: room })).ok, true);
    const got = new Promise((resolve) => b.on("newMessage", resolve));
    const ack = await a.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: "over TLS" });
    assert.equal(ack.ok, true);
    assert.equal((await got).text, "over TLS");
  });

  test("a client that does not trust the certificate is refused", async () => {
    const s = io(srv.httpsUrl, { forceNew: true, reconnection: false, timeout: 3000, ...WS.opts, auth: { token: newUser().token } });
    sockets.push(s);
    const err = await new Promise((resolve) => s.on("connect_error", resolve));
    assert.ok(err, "connect_error");
    assert.equal(s.connected, false);
  });

  test("SSE streams over TLS", async () => {
    const user = newUser("Sse");
    const room = newRoom();
    const sender = client(user, WS);
    await connected(sender);
    assert.equal((await sender.timeout(5000).emitWithAck("joinRoom", { roomId: room })).ok, true);
    const events = [];
    const parser = new SseParser((e) => events.push(e));
    const req = https.get(`${srv.httpsUrl}/api/rooms/${room}/events?token=${user.token}`, { ca: pki.ca }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.match(res.headers["content-type"], /text\/event-stream/);
      res.setEncoding("utf8");
      res.on("data", (d) => parser.push(d));
    });
    req.on("error", () => {});
    try {
      await sleep(300);
      assert.equal((await sender.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: "streamed" })).ok, true);
      await waitUntil(() => events.some((e) => String(e.data).includes("streamed")), 5000);
    } finally {
      req.destroy();
    }
  });

  test("a large body crosses many records intact (the client bundle, byte for byte)", async () => {
    const { stdout } = await run("curl", ["-sS", "--cacert", path.join(dir, "ca.pem"), "-H", "Accept-Encoding: identity", "-o", path.join(dir, "bundle.js"), "-w", "%{http_code}", `${srv.httpsUrl}/socket.io/socket.io.js`]);
    assert.equal(stdout, "200");
    const want = fs.readFileSync(new URL("../../../assets/node_modules/socket.io-client/dist/socket.io.js", import.meta.url));
    assert.ok(want.length > 4 * 16384, "larger than a few records");
    assert.ok(fs.readFileSync(path.join(dir, "bundle.js")).equals(want));
  });

  test("curl reads /metrics and /readyz over https", async () => {
    const { stdout: ready } = await run("curl", ["-sS", "--cacert", path.join(dir, "ca.pem"), `${srv.httpsUrl}/readyz`]);
    assert.equal(JSON.parse(ready).status, "ready");
    const { stdout: metrics } = await run("curl", ["-sS", "--cacert", path.join(dir, "ca.pem"), `${srv.httpsUrl}/metrics`]);
    const m = /^parley_tls_handshakes_total (\d+)$/m.exec(metrics);
    assert.ok(m && Number(m[1]) >= 3, "handshakes counted");
    assert.match(metrics, /^parley_tls_errors_total \d+$/m);
  });

  test("ALPN answers http/1.1; TLS 1.3 and 1.2 are spoken", async () => {
    for (const maxVersion of ["TLSv1.3", "TLSv1.2"]) {
      const s = tls.connect({ host: "127.0.0.1", port: srv.port, ca: pki.ca, servername: "localhost", ALPNProtocols: ["h2", "http/1.1"], maxVersion });
      await new Promise((resolve, reject) => s.on("secureConnect", resolve).on("error", reject));
      assert.equal(s.alpnProtocol, "http/1.1");
      assert.equal(s.getProtocol(), maxVersion);
      s.end();
    }
  });

  test("hostile input closes that connection only", async () => {
    const user = newUser("Steady");
    const steady = client(user, WS);
    await connected(steady);
    const before = (await getHttps(`${srv.httpsUrl}/metrics`, pki.ca)).body;
    const errors = (text) => Number(/^parley_tls_errors_total (\d+)$/m.exec(text)[1]);

    // Plain HTTP and random bytes on the TLS port.
    await rawExchange(srv.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await rawExchange(srv.port, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131 + 7) & 255)));
    // A record header that promises more than a record may hold.
    await rawExchange(srv.port, Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3]));
    // A protocol older than TLS 1.2: refused with an alert (content type 21).
    const old = tls.connect({ host: "127.0.0.1", port: srv.port, ca: pki.ca, servername: "localhost", maxVersion: "TLSv1.1", minVersion: "TLSv1" });
    const oldErr = await new Promise((resolve) => old.on("error", resolve).on("secureConnect", () => resolve(null)));
    assert.ok(oldErr, "TLS 1.1 refused");
    // A handshake cut short: half a ClientHello, then the peer leaves.
    const hello = await new Promise((resolve) => {
      const fake = net.createServer((c) => c.once("data", (d) => { resolve(d); c.destroy(); fake.close(); }));
      fake.listen(0, "127.0.0.1", () => tls.connect({ port: fake.address().port, host: "127.0.0.1", rejectUnauthorized: false }).on("error", () => {}));
    });
    const cut = net.connect(srv.port, "127.0.0.1", () => cut.end(hello.subarray(0, hello.length >> 1)));
    cut.on("error", () => {});
    await new Promise((resolve) => cut.on("close", resolve));
    // A TLS 1.2 client asking for a renegotiation: refused, and the connection does not
    // get a second handshake.
    const reneg = tls.connect({ host: "127.0.0.1", port: srv.port, ca: pki.ca, servername: "localhost", maxVersion: "TLSv1.2" });
    reneg.on("error", () => {});
    await new Promise((resolve, reject) => reneg.on("secureConnect", resolve).on("error", reject));
    const renegEnd = await new Promise((resolve) => {
      reneg.on("close", () => resolve("closed"));
      const ok = reneg.renegotiate({ rejectUnauthorized: true }, (err) => resolve(err ? "refused" : "renegotiated"));
      if (!ok) resolve("not sent");
      setTimeout(() => resolve("no answer within 3 s"), 3000);
    });
    assert.ok(["closed", "refused"].includes(renegEnd), `renegotiation: ${renegEnd}`);
    reneg.destroy();

    // The process and the other connection carry on.
    const ack = await steady.timeout(5000).emitWithAck("joinRoom", { roomId: newRoom() });
    assert.equal(ack.ok, true);
    const afterText = (await getHttps(`${srv.httpsUrl}/metrics`, pki.ca)).body;
    assert.ok(errors(afterText) >= errors(before) + 4, `TLS errors counted: ${errors(before)} → ${errors(afterText)}`);
    assert.ok(srv.process.exitCode === null);
  });

  test("SIGHUP reloads the certificate; open connections stay", async () => {
    const user = newUser("Kept");
    const room = newRoom();
    const kept = client(user, WS);
    await connected(kept);
    assert.equal((await kept.timeout(5000).emitWithAck("joinRoom", { roomId: room })).ok, true);
    assert.equal(await peerName(srv.port, pki.ca), "parley-one");

    fs.copyFileSync(path.join(dir, "two.pem"), path.join(dir, "cert.pem"));
    fs.copyFileSync(path.join(dir, "two.key"), path.join(dir, "key.pem"));
    srv.process.kill("SIGHUP");
    await waitUntil(() => /certificate .* reloaded/.test(srv.stderr()), 5000);
    assert.equal(await peerName(srv.port, pki.ca), "parley-two");
    assert.equal(kept.connected, true);
    assert.equal((await kept.timeout(5000).emitWithAck("sendMessage", { roomId: room, text: "still here" })).ok, true);

    // A broken file is refused and the loaded certificate stays in use.
    fs.writeFileSync(path.join(dir, "cert.pem"), "not a certificate\n");
    srv.process.kill("SIGHUP");
    await waitUntil(() => /SIGHUP: the certificate was not reloaded/.test(srv.stderr()), 5000);
    assert.equal(await peerName(srv.port, pki.ca), "parley-two");
    assert.equal(kept.connected, true);
  });
});

describe("TLS options", () => {
  let dir;
  before(() => {
    dir = tempDir("tlsopt");
    makePki(dir, ["one", "two"]);
  });
  after(() => rmTemp(dir));

  async function exitOf(args) {
    const { spawn } = await import("node:child_process");
    const { buildDir } = await import("../lib/server.mjs");
    const child = spawn(path.join(buildDir, "parley"), ["--port", "0", "--store", "memory", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    const { code } = await processExit(child);
    return { code, err };
  }

  test("a certificate without its key, a key that does not match, TLS with workers: refused", async () => {
    let r = await exitOf(["--tls-cert", path.join(dir, "one.pem")]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--tls-cert and --tls-key go together/);
    r = await exitOf(["--tls-cert", path.join(dir, "one.pem"), "--tls-key", path.join(dir, "two.key")]);
    assert.equal(r.code, 1);
    assert.match(r.err, /key values mismatch/);
    r = await exitOf(["--tls-cert", path.join(dir, "missing.pem"), "--tls-key", path.join(dir, "one.key")]);
    assert.equal(r.code, 1);
    r = await exitOf(["--tls-cert", path.join(dir, "one.pem"), "--tls-key", path.join(dir, "one.key"), "--workers", "2"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--workers 1/);
  });
});
