// --access-log (http/access.c): a line per request a route took, written when its answer
// ends: plain answers, a held long-poll when it is answered or when its client leaves
// (499), a WebSocket upgrade (101), an SSE stream when it closes. Text and JSON formats;
// the query string (which may carry a token) never appears.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { io } from "socket.io-client";

import { WS, connected, newRoom, newUser, request, rmTemp, sleep, startParley, tempDir, waitUntil } from "./util.mjs";

const lines = (file) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean) : []);

for (const format of ["text", "json"]) {
  describe(`access log (${format})`, () => {
    let dir, file, srv;
    before(async () => {
      dir = tempDir("access");
      file = path.join(dir, "access.log");
      srv = await startParley(["--store", "memory", "--workers", "1", "--access-log", file, "--log-format", format]);
    });
    after(async () => {
      await srv?.stop();
      srv?.cleanup();
      rmTemp(dir);
    });

    // The entries, as {method, path, status, length, ua, raw}.
    function entries() {
      return lines(file).map((raw) => {
        if (format === "json") {
          const o = JSON.parse(raw);
          assert.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
          assert.equal(o.remote, "127.0.0.1");
          assert.equal(typeof o.ms, "number");
          return { ...o, raw };
        }
        const m = /^(\S+Z) (\S+) "(\S+) (\S+)" (\d{3}) (\d+|-) (\d+)ms "(.*)"$/.exec(raw);
        assert.ok(m, `a text line: ${raw}`);
        assert.equal(m[2], "127.0.0.1");
        return { method: m[3], path: m[4], status: Number(m[5]), length: m[6] === "-" ? -1 : Number(m[6]), ua: m[8], raw };
      });
    }

    test("answers, long-polls, upgrades and streams each get their line", async () => {
      const user = newUser("Logged");
      const room = newRoom();
      const r = await request(`${srv.url}/healthz`, { headers: { "user-agent": 'probe/1.0 "quoted"' } });
      assert.equal(r.status, 200);
      const secret = await request(`${srv.url}/api/rooms/${room}/messages?token=${user.token}`);
      assert.equal(secret.status, 200);

      // An Engine.IO session over polling: the handshake, then a poll held until the
      // client leaves.
      const hs = await request(`${srv.url}/socket.io/?EIO=4&transport=polling`);
      const sid = JSON.parse(hs.text.slice(1)).sid;
      const held = http.get(`${srv.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`);
      held.on("error", () => {});
      await sleep(300);
      held.destroy();

      // A WebSocket client, and an SSE stream that the client closes.
      const s = io(srv.url, { forceNew: true, reconnection: false, auth: { token: user.token }, ...WS.opts });
      await connected(s);
      assert.equal((await s.timeout(5000).emitWithAck("joinRoom", { roomId: room })).ok, true);
      const sse = http.get(`${srv.url}/api/rooms/${room}/events?token=${user.token}`);
      sse.on("error", () => {});
      await new Promise((resolve) => sse.on("response", resolve));
      await sleep(200);
      sse.destroy();
      s.disconnect();

      await waitUntil(() => entries().some((e) => e.path === `/api/rooms/${room}/events`), 5000);
      const all = entries();
      const find = (pred, what) => {
        const e = all.find(pred);
        assert.ok(e, `${what} in:\n${all.map((x) => x.raw).join("\n")}`);
        return e;
      };
      const probe = find((e) => e.path === "/healthz", "/healthz");
      assert.equal(probe.status, 200);
      assert.equal(probe.method, "GET");
      assert.ok(probe.length > 0);
      if (format === "json") assert.equal(probe.ua, 'probe/1.0 "quoted"');
      else assert.equal(probe.ua, "probe/1.0 \\x22quoted\\x22");
      find((e) => e.path === `/api/rooms/${room}/messages` && e.status === 200, "the API request");
      find((e) => e.path === "/socket.io/" && e.status === 200 && e.length > 0, "the polling handshake");
      find((e) => e.path === "/socket.io/" && e.status === 499, "the abandoned long-poll");
      find((e) => e.path === "/socket.io/" && e.status === 101, "the WebSocket upgrade");
      const stream = find((e) => e.path === `/api/rooms/${room}/events`, "the SSE stream");
      assert.equal(stream.status, 200);
      assert.equal(stream.length, -1);
      for (const e of all) {
        assert.doesNotMatch(e.raw, /token=|EIO=|sid=/, "no query string");
        assert.ok(!e.raw.includes(user.token), "no token");
      }
    });
  });
}
