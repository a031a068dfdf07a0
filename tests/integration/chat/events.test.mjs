// The chat service's events and errors (docs/CHAT-API.md), over websocket and over polling:
// auth, joinRoom, sendMessage (and its validation order), typing, markRead, leaveRoom,
// sendDirect, history, unknown events, events without ack, rate limits (the defaults: a
// burst of 5, 5 per second), and the configuration of text length and presence limits.
//
// "Did NOT receive" is proven without sleeping: Client.flush() makes a round trip on the
// observer's own connection after the action was acknowledged; events on one connection
// arrive in the order the server sent them, so whatever the action sent that connection is
// there once the flush is answered.
import { test, describe, before, beforeEach, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { buildDir } from "../lib/server.mjs";
import {
  MESSAGE_FIELDS,
  SECRET,
  TRANSPORTS,
  WS,
  devToken,
  fullHistory,
  keysOf,
  newRoom,
  newUser,
  nowS,
  request,
  serverPerSuite,
  signToken,
  sleep,
  startParley,
} from "./util.mjs";

const AUTH_FAILED = "Authentication failed";
const sorted = (a) => [...a].sort();
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const err = (error) => ({ ok: false, error });
const OK = { ok: true };

// A message as the contract describes it, from its sendMessage ack and what was sent.
function expectedMessage(ack, roomId, user, text) {
  return { id: ack.id, seq: ack.seq, roomId, userId: user.userId, username: user.name, text, timestamp: ack.timestamp };
}

for (const tr of TRANSPORTS) {
  describe(`chat events over ${tr.name}`, () => {
    const box = serverPerSuite({ before, after, afterEach }, () => startParley(), tr);
    let srv;
    let clients;
    beforeEach(() => {
      ({ srv, clients } = box);
    });

    // n connections that joined roomId (each a new user unless users are given).
    async function members(roomId, n, users = []) {
      const out = [];
      for (let i = 0; i < n; i++) {
        const c = await clients.connect(users[i]);
        await c.join(roomId);
        out.push(c);
      }
      return out;
    }

    // ---- auth ----

    describe("auth", () => {
      test("a missing token is refused with connect_error 'Authentication failed'", async () => {
        for (const auth of [undefined, {}, { token: null }, { token: 42 }, { token: "" }, { tok: newUser().token }]) {
          const e = await clients.refused(auth);
          assert.equal(e.message, AUTH_FAILED, `auth ${JSON.stringify(auth)}`);
        }
      });

      test("a malformed token is refused", async () => {
        const good = newUser().token;
        const [h, p] = good.split(".");
        const notJson = Buffer.from("{not json").toString("base64url");
        for (const token of [
          "abc",
          "a.b.c",
          "..",
          `${h}.${p}`,
          `${h}.${p}.${"!".repeat(43)}`,
          `${h}.${notJson}.${good.split(".")[2]}`,
          `${notJson}.${p}.${good.split(".")[2]}`,
          good + ".x",
          " " + good,
          "x".repeat(10000),
        ]) {
          const e = await clients.refused({ token });
          assert.equal(e.message, AUTH_FAILED, `token ${token.slice(0, 60)}`);
        }
      });

      test("a token with a bad signature is refused", async () => {
        const u = newUser();
        const wrongSecret = signToken({ sub: u.userId, name: "x", exp: nowS() + 3600 }, { secret: "not-the-secret" });
        // A valid token whose payload was swapped for another user's.
        const [h, , sig] = u.token.split(".");
        const other = Buffer.from(JSON.stringify({ sub: "admin", name: "admin", exp: nowS() + 3600 })).toString("base64url");
        const tampered = `${h}.${other}.${sig}`;
        // A signature with one character changed.
        const flipped = u.token.slice(0, -2) + (u.token.at(-2) === "A" ? "B" : "A") + u.token.at(-1);
        for (const token of [wrongSecret, tampered, flipped]) {
          const e = await clients.refused({ token });
          assert.equal(e.message, AUTH_FAILED);
        }
      });

      test("exp is honoured with 30 s of leeway", async () => {
        const expired = signToken({ sub: "late-user", exp: nowS() - 90 });
        assert.equal((await clients.refused({ token: expired })).message, AUTH_FAILED);
        const longExpired = signToken({ sub: "late-user", exp: nowS() - 86400 });
        assert.equal((await clients.refused({ token: longExpired })).message, AUTH_FAILED);
        // Expired 5 s ago: within the leeway, accepted.
        const c = await clients.connect({ token: signToken({ sub: "late-ok", name: "L", exp: nowS() - 5 }) });
        assert.ok(c.s.connected);
      });

      test("nbf is honoured with 30 s of leeway", async () => {
        const future = signToken({ sub: "early-user", nbf: nowS() + 120, exp: nowS() + 3600 });
        assert.equal((await clients.refused({ token: future })).message, AUTH_FAILED);
        const c = await clients.connect({ token: signToken({ sub: "early-ok", nbf: nowS() + 5, exp: nowS() + 3600 }) });
        assert.ok(c.s.connected);
      });

      test("alg none and other algorithms than the configured one are refused", async () => {
        const claims = { sub: "alg-user", name: "A", exp: nowS() + 3600 };
        const tokens = [
          signToken(claims, { header: { alg: "none", typ: "JWT" }, hash: null }),
          signToken(claims, { header: { alg: "none" }, hash: null }),
          signToken(claims, { header: { alg: "None", typ: "JWT" }, hash: null }),
          signToken(claims, { header: { alg: "none", typ: "JWT" } }), // with an HS256 signature
          signToken(claims, { header: { typ: "JWT" } }), // no alg at all
          signToken(claims, { header: { alg: "HS384", typ: "JWT" }, hash: "sha384" }),
          signToken(claims, { header: { alg: "HS512", typ: "JWT" }, hash: "sha512" }),
        ];
        for (const token of tokens) {
          const e = await clients.refused({ token });
          assert.equal(e.message, AUTH_FAILED, `header ${Buffer.from(token.split(".")[0], "base64url")}`);
        }
      });

      test("a token without a string sub is refused", async () => {
        for (const claims of [
          { name: "No Sub", exp: nowS() + 3600 },
          { sub: 42, name: "Numeric", exp: nowS() + 3600 },
          { sub: null, name: "Null", exp: nowS() + 3600 },
          { sub: "", name: "Empty", exp: nowS() + 3600 },
        ]) {
          const e = await clients.refused({ token: signToken(claims) });
          assert.equal(e.message, AUTH_FAILED, JSON.stringify(claims));
        }
      });

      test("after refused attempts a valid token still connects", async () => {
        for (let i = 0; i < 5; i++) await clients.refused({ token: "garbage" });
        const c = await clients.connect();
        assert.ok(c.s.connected);
      });

      test("name is the username; without name, sub is", async () => {
        const room = newRoom();
        const named = newUser("Zoë 🌟");
        const nameless = { ...newUser(), name: undefined };
        nameless.token = signToken({ sub: nameless.userId, exp: nowS() + 3600 });
        nameless.name = nameless.userId;
        const [obs] = await members(room, 1);
        const a = await clients.connect(named);
        await a.join(room);
        assert.deepEqual(await obs.rec.next("userJoined"), { userId: named.userId, username: "Zoë 🌟", roomId: room });
        const b = await clients.connect(nameless);
        await b.join(room);
        assert.deepEqual(await obs.rec.next("userJoined"), { userId: nameless.userId, username: nameless.userId, roomId: room });
        const ack = await b.send(room, "who am I");
        const m = await obs.rec.next("newMessage");
        assert.deepEqual(m, expectedMessage(ack, room, nameless, "who am I"));
      });

      test("dev login: POST /api/dev/token {name} → {token, userId}, a fresh user id per call", async () => {
        const one = await devToken(srv, "Alice");
        const two = await devToken(srv, "Alice");
        assert.deepEqual(keysOf(one), ["token", "userId"]);
        assert.equal(typeof one.token, "string");
        assert.equal(typeof one.userId, "string");
        assert.notEqual(one.userId, two.userId);
        const room = newRoom();
        const [obs] = await members(room, 1);
        const c = await clients.connect({ token: one.token, userId: one.userId, name: "Alice" });
        const { ack } = await c.join(room);
        assert.ok(ack.members.includes(one.userId));
        assert.deepEqual(await obs.rec.next("userJoined"), { userId: one.userId, username: "Alice", roomId: room });
      });
    });

    // ---- joinRoom ----

    describe("joinRoom", () => {
      test("acks {ok, roomId, members}, sends messageHistory, announces a user to the others the first time", async () => {
        const room = newRoom();
        const A = newUser("Ann");
        const B = newUser("Bob");
        const a = await clients.connect(A);
        const j1 = await a.join(room);
        assert.deepEqual(keysOf(j1.ack), ["members", "ok", "roomId"]);
        assert.equal(j1.ack.roomId, room);
        assert.deepEqual(j1.ack.members, [A.userId]);
        assert.deepEqual(j1.history, []);

        const b1 = await clients.connect(B);
        const j2 = await b1.join(room);
        assert.deepEqual(sorted(j2.ack.members), sorted([A.userId, B.userId]));
        assert.deepEqual(await a.rec.next("userJoined"), { userId: B.userId, username: "Bob", roomId: room });

        // B's second connection: B is present already, nobody is told.
        const b2 = await clients.connect(B);
        const j3 = await b2.join(room);
        assert.deepEqual(sorted(j3.ack.members), sorted([A.userId, B.userId]), "members are distinct user ids");
        // Joining again from the same socket: still fine, still no announcement.
        const again = await a.ask("joinRoom", { roomId: room });
        assert.equal(again.ok, true);
        assert.deepEqual(sorted(again.members), sorted([A.userId, B.userId]));

        for (const c of [a, b1, b2]) await c.flush();
        assert.equal(a.rec.count("userJoined"), 1, "one userJoined for B");
        assert.equal(b1.rec.count("userJoined"), 0, "a joiner is not told about itself");
        assert.equal(b2.rec.count("userJoined"), 0, "nobody is told about B's second connection");
        assert.equal(b2.rec.count("messageHistory"), 1);
      });

      test("user:… rooms and socket ids are forbidden", async () => {
        const a = await clients.connect();
        const b = await clients.connect();
        for (const roomId of [`user:${a.userId}`, `user:${b.userId}`, "user:", "user:nobody", a.s.id, b.s.id]) {
          assert.deepEqual(await a.ask("joinRoom", { roomId }), err("forbidden"), roomId);
        }
        // Nothing was joined: a cannot send into b's rooms, and b heard nothing.
        assert.deepEqual(await a.ask("sendMessage", { roomId: b.s.id, text: "psst" }), err("not_in_room"));
        assert.deepEqual(await a.ask("sendMessage", { roomId: `user:${b.userId}`, text: "psst" }), err("not_in_room"));
        await b.flush();
        assert.equal(b.rec.count("newMessage"), 0);
        assert.equal(b.rec.count("userJoined"), 0);
        assert.equal(a.rec.count("messageHistory"), 0);
      });

      test("a socket's own user: room and socket-id room are not chat rooms", async () => {
        const U = newUser();
        const u1 = await clients.connect(U);
        const u2 = await clients.connect(U);
        for (const roomId of [`user:${U.userId}`, u1.s.id]) {
          const r = await u1.ask("sendMessage", { roomId, text: "into my own room" });
          assert.equal(r?.ok, false, `sendMessage to ${roomId} answered ${JSON.stringify(r)}`);
          const t = await u1.ask("typing", { roomId, isTyping: true });
          assert.equal(t?.ok, false, `typing to ${roomId} answered ${JSON.stringify(t)}`);
        }
        await u2.flush();
        assert.equal(u2.rec.count("newMessage"), 0);
        assert.equal(u2.rec.count("userTyping"), 0);
      });

      test("bad roomIds are invalid_payload: empty, over 128 bytes, control characters, not a string", async () => {
        const a = await clients.connect();
        const bad = [
          "",
          "a".repeat(129),
          "€".repeat(43), // 43 code points, 129 bytes
          "a\nb",
          "tab\there",
          "nul\u0000",
          "del\u007f",
          "\u001b[31mred",
          "cr\r",
          42,
          0,
          null,
          true,
          {},
          ["room"],
        ];
        for (const roomId of bad) {
          assert.deepEqual(await a.ask("joinRoom", { roomId }), err("invalid_payload"), JSON.stringify(roomId));
        }
        assert.deepEqual(await a.ask("joinRoom", {}), err("invalid_payload"), "no roomId");
        assert.deepEqual(await a.ask("joinRoom", "just-a-string"), err("invalid_payload"), "payload not an object");
        assert.deepEqual(await a.s.timeout(5000).emitWithAck("joinRoom"), err("invalid_payload"), "no payload");
        assert.equal(a.rec.count("messageHistory"), 0);
      });

      test("roomIds of 1 to 128 bytes of printable UTF-8 are fine", async () => {
        const a = await clients.connect();
        const tag = newRoom("r");
        for (const roomId of [
          "x",
          "a".repeat(128),
          ("€".repeat(42) + tag).slice(0, 42), // 126 bytes
          "😀".repeat(32), // 128 bytes
          `salle de réunion ${tag}`,
          `<b>${tag}</b> "quoted" 'x'`,
        ]) {
          const r = await a.ask("joinRoom", { roomId });
          assert.equal(r.ok, true, `${roomId}: ${JSON.stringify(r)}`);
          assert.equal(r.roomId, roomId);
          assert.ok(r.members.includes(a.userId));
        }
      });

      if (tr === WS) {
        test("members lists at most 100 distinct user ids", async () => {
          const room = newRoom();
          const cs = await Promise.all(Array.from({ length: 101 }, () => clients.connect()));
          for (const c of cs.slice(0, 100)) assert.equal((await c.ask("joinRoom", { roomId: room })).ok, true);
          const last = await cs[100].ask("joinRoom", { roomId: room });
          assert.equal(last.ok, true);
          assert.equal(last.members.length, 100);
          assert.equal(new Set(last.members).size, 100);
          const all = new Set(cs.map((c) => c.userId));
          for (const m of last.members) assert.ok(all.has(m));
        });
      }
    });

    // ---- sendMessage ----

    describe("sendMessage", () => {
      test("acks {ok, id, seq, timestamp}; newMessage with exactly the contract's fields reaches everyone, sender included", async () => {
        const room = newRoom();
        const A = newUser("Sender");
        const a = await clients.connect(A);
        await a.join(room);
        const [b] = await members(room, 1);
        const outsider = await clients.connect();
        await outsider.join(newRoom());

        const t0 = Date.now();
        const ack = await a.send(room, "hello");
        const t1 = Date.now();
        assert.deepEqual(keysOf(ack), ["id", "ok", "seq", "timestamp"]);
        assert.equal(typeof ack.id, "string");
        assert.ok(ack.id.length > 0);
        assert.equal(ack.seq, 1, "first message of a room");
        assert.ok(Number.isInteger(ack.timestamp));
        assert.ok(ack.timestamp >= t0 - 2000 && ack.timestamp <= t1 + 2000, `timestamp ${ack.timestamp} is Unix ms`);

        const want = expectedMessage(ack, room, A, "hello");
        for (const c of [a, b]) {
          const m = await c.rec.next("newMessage");
          assert.deepEqual(keysOf(m), MESSAGE_FIELDS);
          assert.deepEqual(m, want);
        }
        const ack2 = await a.send(room, "again");
        assert.equal(ack2.seq, 2);
        assert.notEqual(ack2.id, ack.id);
        assert.deepEqual(await b.rec.next("newMessage"), expectedMessage(ack2, room, A, "again"));
        assert.deepEqual(await a.rec.next("newMessage"), expectedMessage(ack2, room, A, "again"));

        for (const c of [a, b, outsider]) await c.flush();
        assert.equal(a.rec.count("newMessage"), 2, "one newMessage per message");
        assert.equal(b.rec.count("newMessage"), 2);
        assert.equal(outsider.rec.count("newMessage"), 0, "not to non-members");
      });

      test("errors come in the documented order: not_in_room, invalid_payload, too_long, rate_limited", async () => {
        const room = newRoom();
        const other = newRoom();
        const [a, obs] = await members(room, 2);
        const outsider = await clients.connect();
        const long = "x".repeat(4001);

        // A non-member is not_in_room whatever else is wrong.
        for (const p of [
          { roomId: room, text: "hi" },
          { roomId: room, text: "" },
          { roomId: room, text: 42 },
          { roomId: room },
          { roomId: room, text: long },
        ]) {
          assert.deepEqual(await outsider.ask("sendMessage", p), err("not_in_room"), JSON.stringify(p).slice(0, 80));
        }
        // A member with a bad payload: invalid_payload, even when the text is also too long.
        for (const p of [
          { roomId: room, text: "" },
          { roomId: room, text: 42 },
          { roomId: room, text: null },
          { roomId: room, text: true },
          { roomId: room, text: ["hi"] },
          { roomId: room, text: { t: "hi" } },
          { roomId: room },
          { text: "hi" },
          { roomId: 42, text: "hi" },
          { roomId: "", text: "hi" },
          { roomId: "a".repeat(129), text: "hi" },
          { roomId: null, text: "hi" },
          { roomId: 42, text: long },
          { text: long },
        ]) {
          assert.deepEqual(await a.ask("sendMessage", p), err("invalid_payload"), JSON.stringify(p).slice(0, 80));
        }
        assert.deepEqual(await a.ask("sendMessage", "hi"), err("invalid_payload"), "payload not an object");
        assert.deepEqual(await a.s.timeout(5000).emitWithAck("sendMessage"), err("invalid_payload"), "no payload");
        assert.deepEqual(await a.ask("sendMessage", { roomId: room, text: long }), err("too_long"));

        // With the bucket empty, the other errors still win over rate_limited (all sent at
        // once, so the bucket cannot refill meanwhile).
        const batch = [
          ...Array.from({ length: 5 }, (_, i) => ({ roomId: room, text: `m${i}` })),
          { roomId: room, text: long },
          { roomId: room, text: "" },
          { roomId: 42, text: "hi" },
          { roomId: other, text: "hi" },
          { roomId: room, text: "one too many" },
        ];
        const acks = await Promise.all(batch.map((p) => a.ask("sendMessage", p)));
        for (let i = 0; i < 5; i++) assert.equal(acks[i].ok, true, `message ${i}: ${JSON.stringify(acks[i])}`);
        assert.deepEqual(acks.slice(5), [err("too_long"), err("invalid_payload"), err("invalid_payload"), err("not_in_room"), err("rate_limited")]);

        await obs.flush();
        assert.deepEqual(
          obs.rec.of("newMessage").map((m) => m.text),
          ["m0", "m1", "m2", "m3", "m4"],
          "only accepted messages are announced",
        );
      });

      test("a rejected message takes no token and no seq", async () => {
        const room = newRoom();
        const [a, obs] = await members(room, 2);
        const rejected = [
          { roomId: room, text: "" },
          { roomId: room, text: 7 },
          { roomId: room },
          { roomId: 1, text: "x" },
          { roomId: room, text: "y".repeat(4001) },
          { roomId: room, text: "😀".repeat(4001) },
          { roomId: room, text: "z".repeat(5000) },
          { roomId: "elsewhere", text: "x" },
          { roomId: newRoom(), text: "x" },
          { roomId: room, text: ["x"] },
          { roomId: room, text: {} },
          { roomId: room, text: null },
        ];
        const batch = [
          { roomId: room, text: "first" },
          ...rejected,
          ...["2", "3", "4", "5"].map((t) => ({ roomId: room, text: t })),
          { roomId: room, text: "sixth" },
        ];
        const acks = await Promise.all(batch.map((p) => a.ask("sendMessage", p)));
        const accepted = acks.filter((x) => x.ok);
        assert.equal(accepted.length, 5, `accepted ${JSON.stringify(acks)}`);
        assert.equal(acks[0].ok, true);
        for (const x of acks.slice(1, 1 + rejected.length)) assert.equal(x.ok, false);
        assert.deepEqual(acks.at(-1), err("rate_limited"));
        assert.deepEqual(
          accepted.map((x) => x.seq),
          range(1, 5),
          "seqs are consecutive: rejected messages took none",
        );
        // After a refill, the next message takes the next seq (rate_limited took none).
        await sleep(450);
        const next = await a.send(room, "after refill");
        assert.equal(next.seq, 6);
        await obs.rec.waitCount("newMessage", 6);
        await obs.flush();
        assert.deepEqual(
          obs.rec.of("newMessage").map((m) => [m.seq, m.text]),
          [
            [1, "first"],
            [2, "2"],
            [3, "3"],
            [4, "4"],
            [5, "5"],
            [6, "after refill"],
          ],
        );
      });

      test("too_long counts code points: 4000 emoji pass, 4001 do not", async () => {
        const room = newRoom();
        const [obs] = await members(room, 1);
        const a = await clients.connect();
        await a.join(room);
        const cases = [
          ["😀".repeat(4000), true], // 16000 bytes, 8000 UTF-16 units
          ["😀".repeat(4001), false],
          ["x".repeat(4000), true],
          ["x".repeat(4001), false],
          ["é".repeat(4000), true],
          ["é".repeat(3999) + "😀😀", false],
          ["e\u0301".repeat(2000), true], // combining marks count as code points
          ["e\u0301".repeat(2000) + "e", false],
        ];
        const texts = [];
        for (const [text, ok] of cases) {
          const r = await a.ask("sendMessage", { roomId: room, text });
          if (ok) {
            assert.equal(r.ok, true, `${[...text].length} code points: ${JSON.stringify(r)}`);
            texts.push(text);
          } else {
            assert.deepEqual(r, err("too_long"), `${[...text].length} code points`);
          }
        }
        await obs.rec.waitCount("newMessage", texts.length);
        assert.deepEqual(
          obs.rec.of("newMessage").map((m) => m.text),
          texts,
          "long texts arrive intact",
        );
        const h = await a.ask("history", { roomId: room });
        assert.deepEqual(
          h.messages.map((m) => m.text),
          texts,
          "and are stored intact",
        );
      });

      test("text is stored and sent exactly as given", async () => {
        const room = newRoom();
        const texts = [
          `<script>alert("x")</script><b>bold</b> &amp; &lt;tag&gt; <img src=x onerror=alert(1)>`,
          `it's "double" and 'single' and \`back\` quotes, a \\ backslash and \\u0041 literally`,
          "line 1\nline 2\r\nline 3\n\n\ttabbed\n",
          "emoji 😀 👩‍👩‍👧 🏳️‍🌈 👍🏽 – ünïcödé 中文 العربية 𝄞",
          "   leading and trailing spaces   ",
          '{"looks":"like json","n":[1,2]}',
          "\u2028line separator\u2029paragraph separator\ufeffbom",
          "bell \u0007 escape \u001b[31m red",
        ];
        const [obs] = await members(room, 1);
        const a1 = await clients.connect();
        await a1.join(room);
        const a2 = await clients.connect();
        await a2.join(room);
        const acks = [];
        for (const [i, text] of texts.entries()) acks.push(await (i < 4 ? a1 : a2).send(room, text));
        await obs.rec.waitCount("newMessage", texts.length);
        assert.deepEqual(
          obs.rec.of("newMessage").map((m) => m.text),
          texts,
        );
        const h = await obs.ask("history", { roomId: room });
        assert.deepEqual(
          h.messages.map((m) => m.text),
          texts,
        );
        const late = await clients.connect();
        const { history } = await late.join(room);
        assert.deepEqual(
          history.map((m) => m.text),
          texts,
        );
        assert.deepEqual(
          history.map((m) => m.id),
          acks.map((x) => x.id),
        );
      });

      test("a text with a NUL character round-trips", async () => {
        const room = newRoom();
        const [a, obs] = await members(room, 2);
        const text = "before\u0000after";
        const ack = await a.send(room, text);
        assert.equal((await obs.rec.next("newMessage")).text, text);
        const h = await obs.ask("history", { roomId: room });
        assert.deepEqual(
          h.messages.map((m) => [m.id, m.text]),
          [[ack.id, text]],
        );
      });
    });

    // ---- typing, markRead ----

    describe("typing", () => {
      test("userTyping {userId, username, isTyping, roomId} to the others only", async () => {
        const room = newRoom();
        const A = newUser("Typist");
        const a = await clients.connect(A);
        await a.join(room);
        const [b, c] = await members(room, 2);
        const outsider = await clients.connect();

        assert.deepEqual(await a.ask("typing", { roomId: room, isTyping: true }), OK);
        for (const x of [b, c]) {
          assert.deepEqual(await x.rec.next("userTyping"), { userId: A.userId, username: "Typist", isTyping: true, roomId: room });
        }
        assert.deepEqual(await a.ask("typing", { roomId: room, isTyping: false }), OK);
        for (const x of [b, c]) {
          assert.deepEqual(await x.rec.next("userTyping"), { userId: A.userId, username: "Typist", isTyping: false, roomId: room });
        }
        assert.deepEqual(await outsider.ask("typing", { roomId: room, isTyping: true }), err("not_in_room"));
        for (const x of [a, b, c, outsider]) await x.flush();
        assert.equal(a.rec.count("userTyping"), 0, "not to the typist");
        assert.equal(b.rec.count("userTyping"), 2);
        assert.equal(c.rec.count("userTyping"), 2);
        assert.equal(outsider.rec.count("userTyping"), 0);
      });
    });

    describe("markRead", () => {
      test("messagesRead {userId, messageIds, roomId} to the others; messageIds must be an array of strings", async () => {
        const room = newRoom();
        const B = newUser("Reader");
        const [a] = await members(room, 1);
        const b = await clients.connect(B);
        await b.join(room);
        const outsider = await clients.connect();
        const m1 = await a.send(room, "one");
        const m2 = await a.send(room, "two");

        // The ack and the news carry the reader's mark: the highest seq read (never back).
        assert.deepEqual(await b.ask("markRead", { roomId: room, messageIds: [m1.id, m2.id] }), { ...OK, lastReadSeq: 2 });
        assert.deepEqual(await a.rec.next("messagesRead"), { userId: B.userId, messageIds: [m1.id, m2.id], roomId: room, lastReadSeq: 2 });
        assert.deepEqual(await b.ask("markRead", { roomId: room, messageIds: [] }), { ...OK, lastReadSeq: 2 });
        assert.deepEqual(await a.rec.next("messagesRead"), { userId: B.userId, messageIds: [], roomId: room, lastReadSeq: 2 });
        assert.deepEqual(await b.ask("markRead", { roomId: room, messageIds: [m1.id] }), { ...OK, lastReadSeq: 2 });
        assert.deepEqual(await a.rec.next("messagesRead"), { userId: B.userId, messageIds: [m1.id], roomId: room, lastReadSeq: 2 });

        for (const messageIds of ["id", m1.id, 42, null, { 0: m1.id }, [m1.id, 42], [null], [[m1.id]], [{ id: m1.id }]]) {
          assert.deepEqual(await b.ask("markRead", { roomId: room, messageIds }), err("invalid_payload"), JSON.stringify(messageIds));
        }
        assert.deepEqual(await b.ask("markRead", { roomId: room }), err("invalid_payload"), "no messageIds");
        assert.deepEqual(await outsider.ask("markRead", { roomId: room, messageIds: [m1.id] }), err("not_in_room"));

        for (const x of [a, b, outsider]) await x.flush();
        assert.equal(a.rec.count("messagesRead"), 3, "rejected receipts are not broadcast");
        assert.equal(b.rec.count("messagesRead"), 0, "not to the reader");
        assert.equal(outsider.rec.count("messagesRead"), 0);
      });
    });

    // ---- leaveRoom, disconnects ----

    describe("leaveRoom", () => {
      test("userLeft only when the user's last connection leaves", async () => {
        const room = newRoom();
        const B = newUser("Leaver");
        const [a] = await members(room, 1);
        const b1 = await clients.connect(B);
        await b1.join(room);
        const b2 = await clients.connect(B);
        await b2.join(room);
        await a.rec.waitCount("userJoined", 1);

        assert.deepEqual(await b1.ask("leaveRoom", { roomId: room }), OK);
        await a.flush();
        assert.equal(a.rec.count("userLeft"), 0, "B still has a connection in the room");
        // b1 is out: it cannot send there and no longer hears the room.
        assert.deepEqual(await b1.ask("sendMessage", { roomId: room, text: "x" }), err("not_in_room"));
        await a.send(room, "still here?");
        await b2.rec.next("newMessage");
        await b1.flush();
        assert.equal(b1.rec.count("newMessage"), 0);

        assert.deepEqual(await b2.ask("leaveRoom", { roomId: room }), OK);
        assert.deepEqual(await a.rec.next("userLeft"), { userId: B.userId, username: "Leaver", roomId: room });
        for (const x of [a, b1, b2]) await x.flush();
        assert.equal(a.rec.count("userLeft"), 1);
        assert.equal(b1.rec.count("userLeft"), 0);
        assert.equal(b2.rec.count("userLeft"), 0);
        const again = await a.ask("joinRoom", { roomId: room });
        assert.deepEqual(again.members, [a.userId], "B is no longer a member");
      });

      test("leaveRoom of a room never joined: {ok:true}, nothing broadcast", async () => {
        const room = newRoom();
        const [a, b] = await members(room, 2);
        const x = await clients.connect();
        assert.deepEqual(await x.ask("leaveRoom", { roomId: room }), OK);
        assert.deepEqual(await x.ask("leaveRoom", { roomId: newRoom("nowhere") }), OK);
        for (const c of [a, b, x]) await c.flush();
        assert.equal(a.rec.count("userLeft"), 0);
        assert.equal(b.rec.count("userLeft"), 0);
        const j = await a.ask("joinRoom", { roomId: room });
        assert.deepEqual(sorted(j.members), sorted([a.userId, b.userId]));
      });

      test("leaveRoom of the own user: room does not stop direct messages", async () => {
        const U = newUser();
        const u = await clients.connect(U);
        const r = await u.ask("leaveRoom", { roomId: `user:${U.userId}` });
        assert.equal(r.ok === true || r.error === "forbidden", true, JSON.stringify(r));
        const s = await clients.connect();
        assert.deepEqual(await s.ask("sendDirect", { toUserId: U.userId, text: "still there?" }), OK);
        assert.equal((await u.rec.next("directMessage")).text, "still there?");
      });

      test("a disconnect: userLeft to every room the user is no longer present in", async () => {
        const r1 = newRoom();
        const r2 = newRoom();
        const U = newUser("Goer");
        const [o1] = await members(r1, 1);
        const [o2] = await members(r2, 1);
        const u1 = await clients.connect(U);
        await u1.join(r1);
        await u1.join(r2);
        const u2 = await clients.connect(U);
        await u2.join(r1);
        await o1.rec.waitCount("userJoined", 1);
        await o2.rec.waitCount("userJoined", 1);

        clients.closeOne(u1);
        assert.deepEqual(await o2.rec.next("userLeft"), { userId: U.userId, username: "Goer", roomId: r2 });
        await o1.flush();
        assert.equal(o1.rec.count("userLeft"), 0, "U is still in r1 through u2");

        clients.closeOne(u2);
        assert.deepEqual(await o1.rec.next("userLeft"), { userId: U.userId, username: "Goer", roomId: r1 });
        for (const x of [o1, o2]) await x.flush();
        assert.equal(o1.rec.count("userLeft"), 1);
        assert.equal(o2.rec.count("userLeft"), 1);
      });
    });

    // ---- sendDirect ----

    describe("sendDirect", () => {
      test("directMessage to every connection of the recipient and the sender's other connections", async () => {
        const A = newUser("Dee");
        const B = newUser("Em");
        const a1 = await clients.connect(A);
        const a2 = await clients.connect(A);
        const b1 = await clients.connect(B);
        const b2 = await clients.connect(B);
        const c = await clients.connect();
        const t0 = Date.now();
        assert.deepEqual(await a1.ask("sendDirect", { toUserId: B.userId, text: "psst <b>\"hi\"</b> 😀" }), OK);
        const got = [];
        for (const x of [b1, b2, a2]) {
          const m = await x.rec.next("directMessage");
          assert.deepEqual(keysOf(m), ["from", "fromName", "text", "timestamp", "to"]);
          assert.equal(m.from, A.userId);
          assert.equal(m.fromName, "Dee");
          assert.equal(m.to, B.userId);
          assert.equal(m.text, 'psst <b>"hi"</b> 😀');
          assert.ok(Number.isInteger(m.timestamp) && Math.abs(m.timestamp - t0) < 10000, `timestamp ${m.timestamp}`);
          got.push(m);
        }
        assert.deepEqual(got[1], got[0]);
        assert.deepEqual(got[2], got[0]);
        for (const x of [a1, a2, b1, b2, c]) await x.flush();
        assert.equal(a1.rec.count("directMessage"), 0, "not to the sending socket");
        assert.equal(c.rec.count("directMessage"), 0, "not to anyone else");
        for (const x of [a2, b1, b2]) assert.equal(x.rec.count("directMessage"), 1);
      });

      test("a direct message to oneself reaches one's other connections once", async () => {
        const A = newUser("Self");
        const a1 = await clients.connect(A);
        const a2 = await clients.connect(A);
        assert.deepEqual(await a1.ask("sendDirect", { toUserId: A.userId, text: "note to self" }), OK);
        assert.equal((await a2.rec.next("directMessage")).text, "note to self");
        await a1.flush();
        await a2.flush();
        assert.equal(a1.rec.count("directMessage"), 0);
        assert.equal(a2.rec.count("directMessage"), 1);
      });

      test("ok when the recipient is offline", async () => {
        const A = newUser("Lonely");
        const a1 = await clients.connect(A);
        const a2 = await clients.connect(A);
        assert.deepEqual(await a1.ask("sendDirect", { toUserId: `offline-${A.userId}`, text: "anyone?" }), OK);
        const m = await a2.rec.next("directMessage");
        assert.equal(m.from, A.userId);
        assert.equal(m.to, `offline-${A.userId}`);
        assert.equal(m.text, "anyone?");
      });

      test("follows sendMessage's text rules: invalid_payload, too_long, rate_limited", async () => {
        const B = newUser();
        const a = await clients.connect();
        const b = await clients.connect(B);
        const to = B.userId;
        for (const p of [
          { toUserId: to, text: "" },
          { toUserId: to, text: 42 },
          { toUserId: to, text: null },
          { toUserId: to, text: ["x"] },
          { toUserId: to },
          { text: "hi" },
          { toUserId: 42, text: "hi" },
          { toUserId: "", text: "hi" },
        ]) {
          assert.deepEqual(await a.ask("sendDirect", p), err("invalid_payload"), JSON.stringify(p));
        }
        assert.deepEqual(await a.ask("sendDirect", "hi"), err("invalid_payload"));
        assert.deepEqual(await a.ask("sendDirect", { toUserId: to, text: "😀".repeat(4001) }), err("too_long"));
        assert.deepEqual(await a.ask("sendDirect", { toUserId: to, text: "x".repeat(4001) }), err("too_long"));
        // None of those took a token: 5 pass, the 6th is rate_limited.
        const acks = await Promise.all(
          ["😀".repeat(4000), "2", "3", "4", "5", "6"].map((text) => a.ask("sendDirect", { toUserId: to, text })),
        );
        assert.deepEqual(acks, [OK, OK, OK, OK, OK, err("rate_limited")]);
        await b.rec.waitCount("directMessage", 5);
        await b.flush();
        assert.deepEqual(
          b.rec.of("directMessage").map((m) => m.text),
          ["😀".repeat(4000), "2", "3", "4", "5"],
        );
      });

      test("sendDirect and sendMessage share the connection's token bucket", async () => {
        const room = newRoom();
        const [a] = await members(room, 1);
        const b = await clients.connect();
        const acks = await Promise.all([
          a.ask("sendMessage", { roomId: room, text: "1" }),
          a.ask("sendDirect", { toUserId: b.userId, text: "2" }),
          a.ask("sendMessage", { roomId: room, text: "3" }),
          a.ask("sendDirect", { toUserId: b.userId, text: "4" }),
          a.ask("sendMessage", { roomId: room, text: "5" }),
          a.ask("sendDirect", { toUserId: b.userId, text: "6" }),
          a.ask("sendMessage", { roomId: room, text: "7" }),
        ]);
        assert.deepEqual(
          acks.map((x) => x.ok),
          [true, true, true, true, true, false, false],
        );
        assert.deepEqual(acks.slice(5), [err("rate_limited"), err("rate_limited")]);
      });
    });

    // ---- history ----

    describe("history", () => {
      test("pages oldest first with beforeSeq and limit (default 50, at most 100); joinRoom sends the last 50", async () => {
        const room = newRoom();
        const N = 230; // more than the store's in-memory window (200)
        const senders = await Promise.all(
          Array.from({ length: N / 5 }, async () => {
            const c = await clients.connect();
            await c.join(room);
            return c;
          }),
        );
        const bySeq = new Map();
        await Promise.all(
          senders.map(async (c, k) => {
            const acks = await Promise.all(range(0, 4).map((i) => c.ask("sendMessage", { roomId: room, text: `c${k} m${i}` })));
            for (const [i, ack] of acks.entries()) {
              assert.equal(ack.ok, true, JSON.stringify(ack));
              bySeq.set(ack.seq, expectedMessage(ack, room, c.user, `c${k} m${i}`));
            }
          }),
        );
        assert.deepEqual(
          [...bySeq.keys()].sort((x, y) => x - y),
          range(1, N),
        );
        const want = (from, to) => range(from, to).map((s) => bySeq.get(s));
        for (const c of senders) clients.closeOne(c);

        const r = await clients.connect();
        const { history } = await r.join(room);
        assert.deepEqual(history, want(N - 49, N), "messageHistory: the last 50, oldest first");

        const h = async (q) => {
          const ack = await r.ask("history", { roomId: room, ...q });
          assert.deepEqual(keysOf(ack), ["messages", "ok"], JSON.stringify(ack).slice(0, 200));
          assert.equal(ack.ok, true);
          return ack.messages;
        };
        assert.deepEqual(await h({}), want(N - 49, N), "default 50");
        assert.deepEqual(await h({ limit: 10 }), want(N - 9, N));
        assert.deepEqual(await h({ limit: 1 }), want(N, N));
        assert.deepEqual(await h({ beforeSeq: 50, limit: 20 }), want(30, 49));
        assert.deepEqual(await h({ beforeSeq: 5 }), want(1, 4));
        assert.deepEqual(await h({ beforeSeq: 2 }), want(1, 1));
        assert.deepEqual(await h({ beforeSeq: 1 }), []);
        assert.deepEqual(await h({ beforeSeq: 100, limit: 100 }), want(1, 99));
        assert.deepEqual(await h({ beforeSeq: 200, limit: 60 }), want(140, 199));
        assert.deepEqual(await h({ limit: 100 }), want(N - 99, N));
        assert.deepEqual(await h({ limit: 1000 }), want(N - 99, N), "limit is capped at 100");
        assert.deepEqual(await h({ beforeSeq: N + 1000 }), want(N - 49, N));
        assert.deepEqual(await h({ beforeSeq: N + 1, limit: 5 }), want(N - 4, N));
        assert.deepEqual(await fullHistory(r, room), want(1, N), "paging back reaches every message");

        const outsider = await clients.connect();
        assert.deepEqual(await outsider.ask("history", { roomId: room }), err("not_in_room"));
        assert.deepEqual(await r.ask("history", { roomId: newRoom() }), err("not_in_room"));
      });

      test("an empty room's history is empty", async () => {
        const room = newRoom();
        const [a] = await members(room, 1);
        assert.deepEqual(await a.ask("history", { roomId: room }), { ok: true, messages: [] });
      });
    });

    // ---- unknown events, events without ack ----

    describe("unknown events and events without ack", () => {
      test("unknown events are ignored", async () => {
        const room = newRoom();
        const [a, b] = await members(room, 2);
        a.s.emit("noSuchEvent", { roomId: room, text: "x" });
        a.s.emit("newMessage", { roomId: room, text: "spoofed" });
        a.s.emit("userJoined", { userId: "mallory" });
        await assert.rejects(a.s.timeout(300).emitWithAck("noSuchEvent", { roomId: room }), "no ack for an unknown event");
        assert.ok(a.s.connected);
        await a.flush();
        await b.flush();
        assert.equal(b.rec.count("newMessage"), 0);
        assert.equal(b.rec.count("userJoined"), 0);
        const ack = await a.send(room, "still works");
        assert.equal(ack.seq, 1);
        assert.equal((await b.rec.next("newMessage")).text, "still works");
      });

      test("an event sent without an ack callback still takes effect", async () => {
        const room = newRoom();
        const [obs] = await members(room, 1);
        const U = newUser("Silent");
        const u = await clients.connect(U);
        u.s.emit("joinRoom", { roomId: room });
        assert.deepEqual(await obs.rec.next("userJoined"), { userId: U.userId, username: "Silent", roomId: room });
        assert.deepEqual(await u.rec.next("messageHistory"), []);
        u.s.emit("sendMessage", { roomId: room, text: "no ack wanted" });
        const m = await obs.rec.next("newMessage");
        assert.equal(m.text, "no ack wanted");
        assert.equal(m.userId, U.userId);
        assert.deepEqual(await u.rec.next("newMessage"), m);
        u.s.emit("typing", { roomId: room, isTyping: true });
        assert.deepEqual(await obs.rec.next("userTyping"), { userId: U.userId, username: "Silent", isTyping: true, roomId: room });
        u.s.emit("markRead", { roomId: room, messageIds: [m.id] });
        assert.deepEqual(await obs.rec.next("messagesRead"), { userId: U.userId, messageIds: [m.id], roomId: room, lastReadSeq: m.seq });
        u.s.emit("sendDirect", { toUserId: obs.userId, text: "dm" });
        assert.equal((await obs.rec.next("directMessage")).text, "dm");
        u.s.emit("history", { roomId: room });
        u.s.emit("leaveRoom", { roomId: room });
        assert.deepEqual(await obs.rec.next("userLeft"), { userId: U.userId, username: "Silent", roomId: room });
        // Invalid payloads without ack: nothing happens, the connection stays.
        u.s.emit("sendMessage", { roomId: room, text: "" });
        u.s.emit("joinRoom", { roomId: "" });
        u.s.emit("joinRoom", "not an object");
        await u.flush();
        assert.ok(u.s.connected);
      });
    });

    // ---- rate limits (defaults: burst 5, 5 per second) ----

    describe("rate limiting", () => {
      test("a burst of 5, then rate_limited; the bucket refills at 5 per second", async (t) => {
        const room = newRoom();
        const [a] = await members(room, 1);
        const sendAll = (texts) => Promise.all(texts.map((text) => a.ask("sendMessage", { roomId: room, text })));

        const tA = Date.now();
        const burst = await sendAll(["b1", "b2", "b3", "b4", "b5", "b6"]);
        assert.deepEqual(
          burst.map((x) => x.ok),
          [true, true, true, true, true, false],
        );
        assert.deepEqual(burst[5], err("rate_limited"));

        // 250 ms later one token (1.25) is back, not two (that takes 400 ms).
        await sleep(250);
        const pair = await sendAll(["p1", "p2"]);
        const tE = Date.now();
        assert.equal(pair[0].ok, true, `one token after 250 ms: ${JSON.stringify(pair[0])}`);
        if (tE - tA < 390) assert.deepEqual(pair[1], err("rate_limited"), "only one token after ~250 ms");
        else t.diagnostic(`pair check skipped: ${tE - tA} ms`);

        // A second and more later the bucket is full again: 5, not more.
        await sleep(1100);
        const tF = Date.now();
        const refill = await sendAll(["r1", "r2", "r3", "r4", "r5", "r6", "r7"]);
        const tG = Date.now();
        const n = refill.filter((x) => x.ok).length;
        assert.ok(n >= 5, `the bucket refilled: ${n} accepted`);
        assert.deepEqual(
          refill.slice(0, 5).map((x) => x.ok),
          [true, true, true, true, true],
        );
        if (tG - tF < 190) {
          assert.equal(n, 5, "a full bucket holds 5");
          assert.deepEqual(refill.slice(5), [err("rate_limited"), err("rate_limited")]);
        }
        const seqs = [...burst, ...pair, ...refill].filter((x) => x.ok).map((x) => x.seq);
        assert.deepEqual(seqs, range(1, seqs.length), "rate_limited messages took no seq");
      });

      test("each connection has its own bucket", async () => {
        const room = newRoom();
        const U = newUser();
        const [a1, a2] = await members(room, 2, [U, U]);
        const r1 = await Promise.all(range(1, 6).map((i) => a1.ask("sendMessage", { roomId: room, text: `a${i}` })));
        const r2 = await Promise.all(range(1, 6).map((i) => a2.ask("sendMessage", { roomId: room, text: `b${i}` })));
        assert.deepEqual(
          r1.map((x) => x.ok),
          [true, true, true, true, true, false],
        );
        assert.deepEqual(
          r2.map((x) => x.ok),
          [true, true, true, true, true, false],
        );
      });
    });
  });
}

// ---- configuration: flags win over variables; --max-text, --presence-limit, no dev login ----

describe("chat configuration", () => {
  const box = serverPerSuite({ before, after, afterEach }, () =>
    startParley(["--max-text", "10"], {
      devLogin: false,
      env: { PARLEY_MAX_TEXT: "3", PARLEY_PRESENCE_LIMIT: "2", PARLEY_DEV_LOGIN: "" },
    }),
  );
  let srv;
  let clients;
  beforeEach(() => {
    ({ srv, clients } = box);
  });

  test("--max-text (the flag wins over PARLEY_MAX_TEXT) applies to sendMessage and sendDirect", async () => {
    const room = newRoom();
    const a = await clients.connect();
    await a.join(room);
    assert.equal((await a.ask("sendMessage", { roomId: room, text: "😀".repeat(10) })).ok, true);
    assert.deepEqual(await a.ask("sendMessage", { roomId: room, text: "😀".repeat(11) }), err("too_long"));
    assert.deepEqual(await a.ask("sendDirect", { toUserId: "x", text: "abcdefghijk" }), err("too_long"));
    assert.deepEqual(await a.ask("sendDirect", { toUserId: "x", text: "abcdefghij" }), OK);
  });

  test("parley --help lists every option of the contract", async () => {
    const out = await new Promise((resolve, reject) =>
      execFile(path.join(buildDir, "parley"), ["--help"], { timeout: 5000 }, (e, stdout, stderr) =>
        e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout + stderr),
      ),
    );
    for (const [flag, variable] of [
      ["--port", "PARLEY_PORT"],
      ["--host", "PARLEY_HOST"],
      ["--jwt-secret", "PARLEY_JWT_SECRET"],
      ["--jwt-alg", "PARLEY_JWT_ALG"],
      ["--jwt-public-key", "PARLEY_JWT_PUBLIC_KEY"],
      ["--api-key", "PARLEY_API_KEY"],
      ["--data-dir", "PARLEY_DATA_DIR"],
      ["--store", "PARLEY_STORE"],
      ["--cors-origins", "PARLEY_CORS_ORIGINS"],
      ["--log-level", "PARLEY_LOG_LEVEL"],
      ["--dev-login", "PARLEY_DEV_LOGIN"],
      ["--max-text", "PARLEY_MAX_TEXT"],
      ["--rate-burst", "PARLEY_RATE_BURST"],
      ["--rate-per-sec", "PARLEY_RATE_PER_SEC"],
      ["--presence-limit", "PARLEY_PRESENCE_LIMIT"],
      ["--recovery", "PARLEY_RECOVERY"],
      ["--no-recovery", "PARLEY_RECOVERY"],
    ]) {
      assert.ok(out.includes(flag), `--help does not list ${flag}`);
      assert.ok(out.includes(variable), `--help does not list ${variable}`);
    }
  });

  test("without --dev-login there is no /api/dev/token", async () => {
    const r = await request(`${srv.url}/api/dev/token`, {
      method: "POST",
      body: JSON.stringify({ name: "x" }),
      headers: { "content-type": "application/json" },
    });
    assert.notEqual(r.status, 200);
    assert.doesNotMatch(r.text, /"token"\s*:/);
  });

  test("tokens signed with --jwt-secret are accepted", async () => {
    const c = await clients.connect({ token: signToken({ sub: "cfg-user", exp: nowS() + 60 }, { secret: SECRET }) });
    assert.ok(c.s.connected);
  });

  test("above --presence-limit (PARLEY_PRESENCE_LIMIT=2) joins and leaves are not announced; members still are", async () => {
    const room = newRoom();
    const A = newUser("A");
    const B = newUser("B");
    const C = newUser("C");
    const D = newUser("D");
    const a = await clients.connect(A);
    await a.join(room);
    const b = await clients.connect(B);
    await b.join(room);
    assert.deepEqual(await a.rec.next("userJoined"), { userId: B.userId, username: "B", roomId: room }, "2 members: announced");

    const c = await clients.connect(C);
    const jc = await c.join(room);
    assert.deepEqual(sorted(jc.ack.members), sorted([A.userId, B.userId, C.userId]));
    const d = await clients.connect(D);
    const jd = await d.join(room);
    assert.deepEqual(sorted(jd.ack.members), sorted([A.userId, B.userId, C.userId, D.userId]));
    assert.deepEqual(await d.ask("leaveRoom", { roomId: room }), OK); // 4 → 3 members
    for (const x of [a, b, c]) await x.flush();
    for (const x of [a, b, c]) {
      assert.deepEqual(
        x.rec.of("userJoined").filter((e) => e.userId === C.userId || e.userId === D.userId),
        [],
        "no userJoined above the limit",
      );
      assert.deepEqual(
        x.rec.of("userLeft").filter((e) => e.userId === D.userId),
        [],
        "no userLeft above the limit",
      );
    }
    // Messages still flow to everyone.
    await a.send(room, "hello all");
    for (const x of [a, b, c]) assert.equal((await x.rec.next("newMessage")).text, "hello all");
  });
});
