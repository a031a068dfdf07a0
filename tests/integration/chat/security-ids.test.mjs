// Invisible and direction-changing characters in ids and names (security review, issue 11,
// defect 9).
//
// Room ids, user ids and user names may not hold Unicode control characters (Cc: C0, DEL,
// C1) or format characters (Cf: the soft hyphen, zero-width spaces and joiners, the
// bidirectional marks, embeddings, overrides and isolates, the BOM, tags...), nor the line
// and paragraph separators: "admin" and "admin\u200B", or a room whose name reads backwards
// through U+202E, would look the same on screen. They are refused with the existing
// invalid-payload errors: joinRoom and the other room events (invalid_payload), the HTTP
// API (400 invalid_payload), the development login (400 invalid_payload); a token whose
// sub holds one is refused, and a token name that holds one is not used (the user id is
// shown instead, as for any unusable name).
import { test, describe, before, beforeEach, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { newRoom, newUser, nowS, request, serverPerSuite, signToken, startParley } from "./util.mjs";

const KEY = "security-ids-api-key-0123456789";
const err = (error) => ({ ok: false, error });

// One of each kind, each inside otherwise ordinary text.
const INVISIBLE = {
  "U+0085 (C1 control, next line)": "\u0085",
  "U+009B (C1 control, CSI)": "\u009b",
  "U+00AD (soft hyphen)": "\u00ad",
  "U+061C (Arabic letter mark)": "\u061c",
  "U+180E (Mongolian vowel separator)": "\u180e",
  "U+200B (zero width space)": "\u200b",
  "U+200C (zero width non-joiner)": "\u200c",
  "U+200D (zero width joiner)": "\u200d",
  "U+200E (left-to-right mark)": "\u200e",
  "U+200F (right-to-left mark)": "\u200f",
  "U+2028 (line separator)": "\u2028",
  "U+2029 (paragraph separator)": "\u2029",
  "U+202A (left-to-right embedding)": "\u202a",
  "U+202E (right-to-left override)": "\u202e",
  "U+2060 (word joiner)": "\u2060",
  "U+2066 (left-to-right isolate)": "\u2066",
  "U+2069 (pop directional isolate)": "\u2069",
  "U+FEFF (BOM, zero width no-break space)": "\ufeff",
  "U+FFF9 (interlinear annotation anchor)": "\ufff9",
  "U+E0001 (language tag)": "\u{e0001}",
  "U+E007F (cancel tag)": "\u{e007f}",
};
const withInvisible = (c) => `adm${c}in`;

describe("control and format characters in ids and names", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--store", "memory", "--api-key", KEY]));
  let srv;
  let clients;
  beforeEach(() => {
    ({ srv, clients } = box);
  });

  test("room ids holding them are invalid_payload, on every room event", async () => {
    const a = await clients.connect();
    for (const [what, c] of Object.entries(INVISIBLE)) {
      const roomId = withInvisible(c);
      assert.deepEqual(await a.ask("joinRoom", { roomId }), err("invalid_payload"), `joinRoom: ${what}`);
      assert.deepEqual(await a.ask("sendMessage", { roomId, text: "x" }), err("invalid_payload"), `sendMessage: ${what}`);
      assert.deepEqual(await a.ask("leaveRoom", { roomId }), err("invalid_payload"), `leaveRoom: ${what}`);
    }
    assert.equal(a.rec.count("messageHistory"), 0);
  });

  test("the HTTP API answers 400 invalid_payload for such room ids", async () => {
    for (const [what, c] of Object.entries(INVISIBLE)) {
      const r = await request(`${srv.url}/api/rooms/${encodeURIComponent(withInvisible(c))}/members`, { headers: { "x-api-key": KEY } });
      assert.equal(r.status, 400, what);
      assert.equal(JSON.parse(r.text).error, "invalid_payload", what);
    }
  });

  test("ordinary non-ASCII room ids stay valid", async () => {
    const a = await clients.connect();
    const tag = newRoom("r");
    for (const roomId of [`café ${tag}`, `日本語 ${tag}`, `🎉 ${tag}`, `עברית ${tag}`, `עברית ${tag} العربية`, `a\u00a0b ${tag}`]) {
      const r = await a.ask("joinRoom", { roomId });
      assert.equal(r.ok, true, `${JSON.stringify(roomId)}: ${JSON.stringify(r)}`);
    }
  });

  test("user names: the development login refuses them, the HTTP API too, a token's is not shown", async () => {
    for (const [what, c] of Object.entries(INVISIBLE)) {
      const r = await request(`${srv.url}/api/dev/token`, {
        method: "POST",
        body: JSON.stringify({ name: withInvisible(c) }),
        headers: { "content-type": "application/json" },
      });
      assert.equal(r.status, 400, `dev token: ${what}`);
      assert.equal(JSON.parse(r.text).error, "invalid_payload", `dev token: ${what}`);
    }
    const room = newRoom();
    for (const field of ["username", "userId"]) {
      const r = await request(`${srv.url}/api/rooms/${room}/messages`, {
        method: "POST",
        body: JSON.stringify({ text: "hi", [field]: withInvisible("\u202e") }),
        headers: { "x-api-key": KEY, "content-type": "application/json" },
      });
      assert.equal(r.status, 400, `API post ${field}`);
      assert.equal(JSON.parse(r.text).error, "invalid_payload", `API post ${field}`);
    }
    // A token whose name holds one: the user id is shown instead.
    const u = newUser(withInvisible("\u200b"));
    const a = await clients.connect(u);
    await a.join(room);
    await a.send(room, "who am I?");
    const m = await a.rec.next("newMessage");
    assert.equal(m.username, u.userId, "the name with a zero width space is not used");
  });

  test("a token whose sub holds one is refused", async () => {
    for (const c of ["\u202e", "\u200b", "\u0085", "\ufeff"]) {
      const token = signToken({ sub: withInvisible(c), exp: nowS() + 60 });
      const e = await clients.refused({ token });
      assert.equal(e.message, "Authentication failed", JSON.stringify(c));
    }
  });
});
