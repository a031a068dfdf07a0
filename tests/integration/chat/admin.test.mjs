// The /admin namespace for @socket.io/admin-ui 0.5 (src/chat/admin.c, docs/OPERATIONS.md
// "Admin UI"): socket.io-client plays the UI's part exactly as its App.vue does (auth
// {username, password} then {sessionId}, the events it listens to, the actions it emits),
// against the real parley binary with real chat clients. The password hash is made with
// bcryptjs, the library of the package's own server side.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import bcrypt from "bcryptjs";
import { io } from "socket.io-client";

import { buildDir } from "../lib/server.mjs";
import { Recorder } from "../lib/sio.mjs";
import { connectError, connected, devToken, sleep, startParley, waitUntil } from "./util.mjs";

const PASSWORD = "correct horse battery staple";
const HASH = bcrypt.hashSync(PASSWORD, 8);
const ALL_FEATURES = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS", "ALL_EVENTS"];

const sockets = [];
function track(s) {
  sockets.push(s);
  return s;
}

// An admin socket as the UI opens it (App.vue tryConnect).
function admin(srv, auth, opts = {}) {
  return track(io(`${srv.url}/admin`, { forceNew: true, reconnection: false, withCredentials: true, auth, ...opts }));
}

// An admin logged in, with everything it receives recorded.
async function login(srv, opts) {
  const s = admin(srv, { username: "admin", password: PASSWORD }, opts);
  const rec = new Recorder(s);
  await connected(s);
  await rec.until(() => rec.count("config") && rec.count("server_stats") && rec.count("all_sockets"), 5000, "config, server_stats, all_sockets");
  return { s, rec };
}

// A chat client with a development token, connected.
async function chatClient(srv, name = "alice", opts = {}) {
  const { token } = await devToken(srv, name);
  const s = track(io(srv.url, { forceNew: true, reconnection: false, auth: { token }, ...opts }));
  const rec = new Recorder(s);
  await connected(s);
  return { s, rec };
}

const ack = (s, ev, payload) => s.timeout(5000).emitWithAck(ev, payload);

function lastStats(rec) {
  const all = rec.argsOf("server_stats");
  return all[all.length - 1][0];
}

after(() => {
  for (const s of sockets) s.disconnect();
});

describe("admin UI: authentication and configuration", () => {
  let srv;
  before(async () => {
    srv = await startParley(["--store", "memory", "--admin", "--admin-username", "admin", "--admin-password-hash", HASH]);
  });
  after(async () => {
    await srv.stop();
    srv.cleanup();
  });

  test("wrong credentials, and credentials of the wrong shape, are refused with 'invalid credentials'", async () => {
    const refused = [
      { username: "admin", password: "wrong" },
      { username: "root", password: PASSWORD },
      { username: "admin" },
      {},
      { username: "admin", password: 12345 },
      { username: ["admin"], password: PASSWORD },
      { username: "admin", password: "x".repeat(200000) },
      { sessionId: "0123456789abcdef" },
      { sessionId: 42 },
    ];
    for (const auth of refused) {
      const err = await connectError(admin(srv, auth), 10000);
      assert.equal(err.message, "invalid credentials", JSON.stringify(auth).slice(0, 80));
    }
  });

  test("the right password connects, gets a session, the config, its stats and the sockets", async () => {
    const { s, rec } = await login(srv);
    const [sessionId] = rec.argsOf("session")[0];
    assert.match(sessionId, /^[0-9a-f]{16}$/);
    assert.deepEqual(rec.argsOf("config")[0][0], { supportedFeatures: ALL_FEATURES });
    const stats = lastStats(rec);
    assert.equal(typeof stats.serverId, "string");
    assert.ok(stats.serverId.length > 0);
    assert.equal(stats.pid > 0, true);
    assert.equal(typeof stats.uptime, "number");
    assert.ok(stats.clientsCount >= 1);
    assert.equal(typeof stats.pollingClientsCount, "number");
    assert.ok(Array.isArray(stats.aggregatedEvents));
    assert.deepEqual(
      stats.namespaces.find((n) => n.name === "/admin"),
      { name: "/admin", socketsCount: 1 },
    );
    // The admin's own socket is one of all_sockets, serialised as the UI reads it; the
    // auth object (its password) is not shown.
    const all = rec.argsOf("all_sockets")[0][0];
    const me = all.find((x) => x.id === s.id);
    assert.ok(me, "the admin socket is listed");
    assert.equal(me.nsp, "/admin");
    assert.equal(me.clientId, s.io.engine.id.slice(0, 12));
    assert.ok(["polling", "websocket"].includes(me.transport));
    assert.deepEqual(me.rooms, [s.id]);
    assert.equal(me.handshake.auth, undefined);
    assert.ok(!JSON.stringify(all).includes(PASSWORD));

    // The UI reconnects with its session alone (page reload); a made-up one is refused.
    const again = admin(srv, { sessionId });
    await connected(again);
    again.disconnect();
    const err = await connectError(admin(srv, { sessionId: sessionId.replace(/.$/, (c) => (c === "0" ? "1" : "0")) }));
    assert.equal(err.message, "invalid credentials");
  });

  test("server_stats arrive every 2 s and follow the chat clients", async () => {
    const { rec } = await login(srv);
    const before = lastStats(rec);
    const rootBefore = before.namespaces.find((n) => n.name === "/")?.socketsCount ?? 0;
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await chatClient(srv, `stats${i}`));
    const n0 = rec.count("server_stats");
    const stats = await rec.until(
      () => {
        const st = lastStats(rec);
        return rec.count("server_stats") > n0 && st.namespaces.find((n) => n.name === "/")?.socketsCount === rootBefore + 3 && st;
      },
      5000,
      "server_stats with 3 more sockets in /",
    );
    assert.ok(stats.clientsCount >= before.clientsCount + 3);
    // The aggregated traffic counts the connections and the packets.
    const seen = rec.argsOf("server_stats").flatMap(([st]) => st.aggregatedEvents);
    const sum = (type) => seen.filter((e) => e.type === type).reduce((n, e) => n + e.count, 0);
    assert.ok(sum("rawConnection") >= 3, JSON.stringify(seen));
    assert.ok(sum("packetsIn") >= 3);
    assert.ok(sum("bytesOut") > 0);
    for (const e of seen) {
      assert.equal(e.timestamp % 1000, 0);
      assert.ok(Math.abs(e.timestamp - Date.now()) < 60000);
    }
    // Two seconds apart, as the package emits them.
    const t0 = Date.now();
    const n1 = rec.count("server_stats");
    await rec.until(() => rec.count("server_stats") >= n1 + 2, 7000, "two more server_stats");
    const dt = Date.now() - t0;
    assert.ok(dt >= 2000 && dt < 6500, `${dt} ms`);
    for (const c of clients) c.s.disconnect();
    await rec.until(() => lastStats(rec).namespaces.find((n) => n.name === "/")?.socketsCount === rootBefore, 5000, "the clients gone from the stats");
  });

  test("socket and room events follow a chat client: connect, join, events, leave, disconnect", async () => {
    const { rec } = await login(srv);
    const { s: chat } = await chatClient(srv, "bob");
    const connectedEv = await rec.until(() => rec.argsOf("socket_connected").find(([x]) => x.id === chat.id), 5000, "socket_connected");
    const [sock, when] = connectedEv;
    assert.equal(sock.nsp, "/");
    assert.equal(sock.clientId, chat.io.engine.id.slice(0, 12));
    assert.deepEqual(sock.rooms, [chat.id]);
    assert.equal(new Date(when).toISOString(), when);

    const joined = await ack(chat, "joinRoom", { roomId: "lobby" });
    assert.equal(joined.ok, true);
    await rec.until(() => rec.argsOf("room_joined").some(([nsp, room, id]) => nsp === "/" && room === "lobby" && id === chat.id), 5000, "room_joined lobby");
    const received = rec.argsOf("event_received").find(([nsp, id]) => nsp === "/" && id === chat.id);
    assert.ok(received, "event_received for joinRoom");
    assert.deepEqual(received[2], ["joinRoom", { roomId: "lobby" }]);
    // What the chat sent that socket alone (its history) is an event_sent.
    await rec.until(() => rec.argsOf("event_sent").some(([nsp, id, args]) => id === chat.id && args[0] === "messageHistory"), 5000, "event_sent");

    await ack(chat, "leaveRoom", { roomId: "lobby" });
    await rec.until(() => rec.argsOf("room_left").some(([nsp, room, id]) => room === "lobby" && id === chat.id), 5000, "room_left lobby");

    const chatId = chat.id; // socket.io-client forgets it on disconnect
    chat.disconnect();
    const [nsp, id, reason] = await rec.until(() => rec.argsOf("socket_disconnected").find(([, id]) => id === chatId), 5000, "socket_disconnected");
    assert.equal(nsp, "/");
    assert.equal(id, chatId);
    assert.equal(reason, "client namespace disconnect");
    // Its own room goes too, so the UI's room list empties.
    await rec.until(() => rec.argsOf("room_left").some(([, room, id]) => room === chatId && id === chatId), 5000, "its own room left");
  });

  test("the actions: emit reaches the socket, join and leave change its rooms, _disconnect disconnects it", async () => {
    const { s: adm, rec } = await login(srv);
    const { s: chat, rec: chatRec } = await chatClient(srv, "carol");
    const { s: other, rec: otherRec } = await chatClient(srv, "dave");

    adm.emit("emit", "/", chat.id, "fromAdmin", 1, { two: 2 });
    const [args] = await chatRec.until(() => chatRec.argsOf("fromAdmin")[0] && chatRec.argsOf("fromAdmin"), 5000, "fromAdmin");
    assert.deepEqual(args.slice(0, 2), [1, { two: 2 }]);
    await sleep(200);
    assert.equal(otherRec.count("fromAdmin"), 0, "the filter kept it to one socket");

    adm.emit("join", "/", "vip", chat.id);
    await rec.until(() => rec.argsOf("room_joined").some(([, room, id]) => room === "vip" && id === chat.id), 5000, "room_joined vip");
    adm.emit("emit", "/", "vip", "toVip", "hello");
    await chatRec.until(() => chatRec.count("toVip") === 1, 5000, "toVip");
    adm.emit("leave", "/", "vip", chat.id);
    await rec.until(() => rec.argsOf("room_left").some(([, room, id]) => room === "vip" && id === chat.id), 5000, "room_left vip");
    adm.emit("emit", "/", "vip", "toVip", "again");
    await sleep(300);
    assert.equal(chatRec.count("toVip"), 1, "no longer in vip");

    const gone = new Promise((resolve) => chat.once("disconnect", resolve));
    const chatId = chat.id;
    adm.emit("_disconnect", "/", false, chatId);
    assert.equal(await gone, "io server disconnect");
    assert.ok(other.connected, "only the one socket");
    await rec.until(() => rec.argsOf("socket_disconnected").some(([, id, reason]) => id === chatId && reason === "server namespace disconnect"), 5000, "socket_disconnected");
  });

  test("bad actions are ignored and the server goes on", async () => {
    const { s: adm, rec } = await login(srv);
    const { s: chat, rec: chatRec } = await chatClient(srv, "erin");
    const bad = [
      ["emit"],
      ["emit", 42, null, "x"],
      ["emit", "/nowhere", null, "x"],
      ["emit", "/", null, "disconnect"],
      ["emit", "/", { room: 1 }, "x"],
      ["emit", "/", null, { ev: 1 }],
      ["emit", "/", "", "x"],
      ["join", "/", null, chat.id],
      ["join", "/", "r".repeat(100000), chat.id],
      ["join", "/", "ok", ["list"]],
      ["join", "/admin/../", "x"],
      ["leave"],
      ["_disconnect", "/", "yes", chat.id],
      ["_disconnect", "/", true, 17],
      ["_disconnect", "/nowhere", true],
      ["_disconnect", "/", false, "no-such-socket-id"],
      ["emit", "/", "no-such-socket-id", "x", "y".repeat(500000)],
    ];
    for (const [ev, ...args] of bad) adm.emit(ev, ...args);
    adm.emit("unknownAction", 1, 2, 3);
    await sleep(500);
    assert.ok(chat.connected, "nobody was disconnected");
    assert.equal(chatRec.count("x"), 0);
    assert.ok(!rec.argsOf("room_joined").some(([, room]) => room === "ok" || room.startsWith("rrr")));
    // Still serving: the same admin can act.
    adm.emit("emit", "/", chat.id, "stillThere");
    await chatRec.until(() => chatRec.count("stillThere") === 1, 5000, "stillThere");
  });
});

describe("admin UI: readonly and production modes, refusals at start", () => {
  test("readonly advertises no action and does none", async () => {
    const srv = await startParley(["--store", "memory", "--admin", "--admin-username", "admin", "--admin-password-hash", HASH, "--admin-readonly"]);
    try {
      const { s: adm, rec } = await login(srv);
      assert.deepEqual(rec.argsOf("config")[0][0], { supportedFeatures: ["AGGREGATED_EVENTS", "ALL_EVENTS"] });
      const { s: chat, rec: chatRec } = await chatClient(srv, "frank");
      await rec.until(() => rec.argsOf("socket_connected").some(([x]) => x.id === chat.id), 5000, "socket_connected (reading works)");
      adm.emit("emit", "/", chat.id, "nope");
      adm.emit("join", "/", "vip", chat.id);
      adm.emit("_disconnect", "/", true, chat.id);
      await sleep(500);
      assert.ok(chat.connected);
      assert.equal(chatRec.count("nope"), 0);
      assert.ok(!rec.argsOf("room_joined").some(([, room]) => room === "vip"));
      chat.disconnect();
      adm.disconnect();
    } finally {
      await srv.stop();
      srv.cleanup();
    }
  });

  test("production mode: stats only, no sockets", async () => {
    const srv = await startParley(["--store", "memory", "--admin", "--admin-no-auth", "--admin-production"]);
    try {
      const s = admin(srv, {});
      const rec = new Recorder(s);
      await connected(s);
      await rec.until(() => rec.count("server_stats") >= 1, 5000, "server_stats");
      assert.deepEqual(rec.argsOf("config")[0][0].supportedFeatures, ALL_FEATURES.filter((f) => f !== "ALL_EVENTS"));
      const { s: chat } = await chatClient(srv, "gina");
      await rec.until(() => rec.count("server_stats") >= 2, 5000, "server_stats");
      assert.equal(rec.count("all_sockets"), 0);
      assert.equal(rec.count("socket_connected"), 0);
      assert.equal(rec.count("session"), 0, "no auth, no session");
      chat.disconnect();
      s.disconnect();
    } finally {
      await srv.stop();
      srv.cleanup();
    }
  });

  test("--admin without credentials, half of them, or a hash that is not bcrypt does not start", () => {
    const bin = path.join(buildDir, "parley");
    const cases = [
      ["--admin"],
      ["--admin", "--admin-username", "admin"],
      ["--admin-password-hash", HASH],
      ["--admin", "--admin-username", "admin", "--admin-password-hash", "plain-text"],
      ["--admin", "--admin-username", "admin", "--admin-password-hash", "$1$abc$0123456789012345678901"],
    ];
    for (const args of cases) {
      const r = spawnSync(bin, ["--port", "0", "--store", "memory", ...args], { encoding: "utf8", timeout: 10000 });
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /admin/);
    }
  });
});

describe("admin UI: several worker processes", () => {
  test("each worker is a server in the UI; all_sockets and events span them", async () => {
    const srv = await startParley(["--store", "memory", "--workers", "2", "--admin", "--admin-username", "admin", "--admin-password-hash", HASH]);
    try {
      const { rec } = await login(srv);
      const ids = () => new Set(rec.argsOf("server_stats").map(([st]) => st.serverId));
      await rec.until(() => ids().size === 2, 8000, "server_stats of two workers");
      for (const id of ids()) assert.match(id, /#\d+$/);
      // Chat clients land on either worker; every one of them is reported.
      const clients = [];
      for (let i = 0; i < 6; i++) clients.push(await chatClient(srv, `w${i}`));
      await rec.until(() => clients.every(({ s }) => rec.argsOf("socket_connected").some(([x]) => x.id === s.id)), 8000, "socket_connected from both workers");
      // A second admin's all_sockets lists them all, whichever worker it is on.
      const second = await login(srv);
      await second.rec.until(() => second.rec.count("all_sockets") >= 1, 5000, "all_sockets");
      const listed = new Set(second.rec.argsOf("all_sockets")[0][0].map((x) => x.id));
      for (const { s } of clients) assert.ok(listed.has(s.id), `${s.id} listed`);
      // The stats' namespaces add up over the workers.
      await waitUntil(() => {
        const latest = new Map();
        for (const [st] of rec.argsOf("server_stats")) latest.set(st.serverId, st);
        let n = 0;
        for (const st of latest.values()) n += st.namespaces.find((x) => x.name === "/")?.socketsCount ?? 0;
        return n === clients.length;
      }, { timeoutMs: 8000, what: "socketsCount summed over the workers" });
      // An action from the admin reaches a socket on any worker.
      for (const { s, rec: cr } of clients) {
        second.s.emit("emit", "/", s.id, "ping-all");
        await cr.until(() => cr.count("ping-all") === 1, 5000, "ping-all");
      }
      for (const { s } of clients) s.disconnect();
    } finally {
      await srv.stop();
      srv.cleanup();
    }
  });
});
