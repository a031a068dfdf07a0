// JWT time claims (security review, issue 11, defect 8).
//
// exp, nbf and iat, when present, must be integers (NumericDate, whole seconds) from 0 to
// 253402300799 (the end of year 9999); anything else refuses the token. Before the fix a
// non-integer nbf was ignored (the token accepted an hour early), and exp = INT64_MAX or
// nbf = INT64_MIN overflowed in the leeway arithmetic (UBSan aborts the ASan build). Tokens
// are signed here with the server's --jwt-secret; the payload is written as raw JSON text so
// that integers beyond 2^53 reach the server exactly. Both front ends are checked: the
// Socket.IO handshake (connect_error "Authentication failed") and the HTTP API (401).
import { test, describe, before, beforeEach, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { SECRET, WS, nowS, request, serverPerSuite, startParley } from "./util.mjs";

const AUTH_FAILED = "Authentication failed";
const b64url = (x) => Buffer.from(x).toString("base64url");

// An HS256 token whose payload is exactly `payload` (JSON text).
function rawToken(payload, secret = SECRET) {
  const h = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const p = b64url(payload);
  return `${h}.${p}.${crypto.createHmac("sha256", secret).update(`${h}.${p}`).digest("base64url")}`;
}

let n = 0;
// The payload text of a token for a new user with the given extra members (raw JSON text).
const claims = (extra) => `{"sub":"jwt-${process.pid}-${++n}","name":"T"${extra ? `,${extra}` : ""}}`;

describe("JWT time claims", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--store", "memory"]), WS);
  let srv;
  let clients;
  beforeEach(() => {
    ({ srv, clients } = box);
  });

  // Whether the HTTP API takes the token (200) or refuses it (401).
  async function httpStatus(token) {
    const r = await request(`${srv.url}/api/rooms/lobby/members`, { headers: { authorization: `Bearer ${token}` } });
    return r.status;
  }

  async function refused(payload, what) {
    const token = rawToken(payload);
    const e = await clients.refused({ token });
    assert.equal(e.message, AUTH_FAILED, `${what}: Socket.IO`);
    assert.equal(await httpStatus(token), 401, `${what}: HTTP API`);
  }

  async function accepted(payload, what) {
    const token = rawToken(payload);
    const c = await clients.connect({ token, userId: "?" });
    clients.closeOne(c);
    assert.equal(await httpStatus(token), 200, `${what}: HTTP API`);
  }

  test("a non-integer nbf an hour ahead is refused (it used to be ignored)", async () => {
    await refused(claims(`"nbf":${nowS() + 3600}.5`), "nbf now+3600.5");
  });

  test("exp = INT64_MAX is refused, without overflow", async () => {
    await refused(claims(`"exp":9223372036854775807`), "exp INT64_MAX");
  });

  test("nbf = INT64_MIN is refused, without overflow", async () => {
    await refused(claims(`"nbf":-9223372036854775808`), "nbf INT64_MIN");
  });

  test("time claims of the wrong type or out of range are refused", async () => {
    const now = nowS();
    const cases = [
      [`"exp":${now + 600}.0`, "exp a real with no fraction"],
      [`"exp":"${now + 600}"`, "exp a string"],
      [`"exp":null`, "exp null"],
      [`"exp":true`, "exp true"],
      [`"exp":[${now + 600}]`, "exp an array"],
      [`"exp":1e300`, "exp a huge real"],
      [`"exp":253402300800`, "exp past year 9999"],
      [`"nbf":-1`, "nbf negative"],
      [`"nbf":${now - 60}.25`, "nbf a real in the past"],
      [`"nbf":-9223372036854775807`, "nbf INT64_MIN + 1"],
      [`"iat":${now}.5`, "iat a real"],
      [`"iat":"${now}"`, "iat a string"],
      [`"iat":9223372036854775807`, "iat INT64_MAX"],
      [`"exp":${now + 600},"nbf":9223372036854775807`, "nbf INT64_MAX"],
      [`"exp":-9223372036854775808`, "exp INT64_MIN"],
    ];
    for (const [extra, what] of cases) await refused(claims(extra), what);
  });

  test("integer time claims keep their meaning, with 30 s of leeway", async () => {
    const now = nowS();
    await accepted(claims(`"iat":${now},"exp":${now + 600},"nbf":${now}`), "a usual token");
    await accepted(claims(`"exp":${now - 10}`), "expired 10 s ago (leeway)");
    await accepted(claims(`"nbf":${now + 10}`), "valid in 10 s (leeway)");
    await accepted(claims(`"exp":253402300799,"nbf":0,"iat":0`), "the extremes of the range");
    await accepted(claims(""), "no time claims at all");
    await refused(claims(`"exp":${now - 120}`), "expired 2 minutes ago");
    await refused(claims(`"nbf":${now + 120}`), "valid in 2 minutes");
  });
});
