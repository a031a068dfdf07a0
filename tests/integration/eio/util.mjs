// Small helpers shared by the Engine.IO integration tests (tests/integration/eio/*.test.mjs).
//
// Everything here talks to the server with a fresh TCP connection per HTTP request
// (agent: false, "Connection: close"), so that the server's /stats "connections" count is not
// inflated by idle keep-alive sockets pooled on the client side. What is not specific to
// eio_echo (HTTP requests, raw TCP and WebSocket framing, the raw websocket client, waits)
// lives in ../lib/ and is re-exported here.
import { test, describe, before, after } from "node:test";
import { request as httpRequest, getJson } from "../lib/http.mjs";
import { RawConn, frame, wsConnect } from "../lib/raw.mjs";
import { startServer } from "../lib/server.mjs";
import { pollUntil, withTimeout } from "../lib/wait.mjs";
import { WsClient } from "../lib/ws.mjs";

export { RawConn, parseFrame, parseResponse, rst } from "../lib/raw.mjs";
export { pool, withTimeout } from "../lib/wait.mjs";
export { WsClient } from "../lib/ws.mjs";

export const EIO_PATH = "/engine.io/";
export const SEP = "\x1e";

// Starts eio_echo with the given extra arguments.
export function startEcho(args = [], opts) {
  return startServer("eio_echo", args, opts);
}

// One HTTP request on its own connection (../lib/http.mjs), bounded by 10 s unless timeoutMs
// says otherwise. Resolves to { status, headers, body: Buffer, text: string, json() }.
export function request(url, opts = {}) {
  return httpRequest(url, { ...opts, timeoutMs: opts.timeoutMs ?? 10000 });
}

// URL of the Engine.IO endpoint of srv with the given query parameters (in order).
export function eioUrl(srv, query = {}, { ws = false, path = EIO_PATH } = {}) {
  const base = ws ? srv.wsUrl : srv.url;
  const qs = new URLSearchParams(query).toString();
  return `${base}${path}${qs ? `?${qs}` : ""}`;
}

export function pollUrl(srv, sid, extra = {}) {
  const q = { EIO: "4", transport: "polling" };
  if (sid !== undefined) q.sid = sid;
  return eioUrl(srv, { ...q, ...extra });
}

export function wsUrl(srv, sid) {
  const q = { EIO: "4", transport: "websocket" };
  if (sid !== undefined) q.sid = sid;
  return eioUrl(srv, q, { ws: true });
}

// GET /stats → { sessions, connections }.
export function getStats(srv) {
  return getJson(`${srv.url}/stats`, { timeoutMs: 5000 });
}

// Waits until the server reports no open sessions and at most `maxConnections` TCP connections
// (the /stats request itself counts as one).
export function waitIdle(srv, { timeoutMs = 10000, maxConnections = 1 } = {}) {
  return pollUntil(() => getStats(srv), (s) => s.sessions === 0 && s.connections <= maxConnections, {
    timeoutMs,
    intervalMs: 50,
    what: "sessions 0",
    label: "last /stats",
  });
}

// Opens a polling session; returns { sid, open, response }.
export async function pollingHandshake(srv, extra = {}) {
  const r = await request(pollUrl(srv, undefined, extra));
  if (r.status !== 200) throw new Error(`handshake answered ${r.status}: ${r.text}`);
  if (!r.text.startsWith("0")) throw new Error(`handshake body is not an open packet: ${r.text}`);
  const open = JSON.parse(r.text.slice(1));
  return { sid: open.sid, open, response: r };
}

// Splits a polling payload into packets.
export function splitPayload(text) {
  return text === "" ? [] : text.split(SEP);
}

// Payload packets minus heartbeat pings ("2"), which the 300 ms ping interval of the protocol
// tests may slip into any long-poll answer.
export function withoutPings(text) {
  return splitPayload(text).filter((p) => p !== "2");
}

// Parses a JSON error body {code, message}; throws with context when it is not one.
export function errorBody(r) {
  let v;
  try {
    v = JSON.parse(r.text);
  } catch {
    throw new Error(`error body is not JSON (status ${r.status}): ${JSON.stringify(r.text)}`);
  }
  return v;
}

// Opens a raw websocket session (transport=websocket, no sid) and returns the client plus the
// parsed open packet.
export async function wsHandshake(srv, { autoPong = false } = {}) {
  const c = new WsClient(wsUrl(srv), { autoPong });
  await withTimeout(c.opened, 5000, "websocket open");
  return { client: c, open: await c.readOpen() };
}

// ---------------------------------------------------------------------------------------------
// Raw TCP (../lib/raw.mjs), for byte-level HTTP and WebSocket tests.

// Builds a client→server WebSocket frame. len overrides the declared payload length.
export function wsFrame(opcode, payload = Buffer.alloc(0), { len, ...opts } = {}) {
  return frame({ ...opts, opcode, payload, declaredLen: len });
}

// Opens a raw connection and performs a WebSocket handshake on the Engine.IO path. Returns the
// connection (its buffer holds whatever followed the 101) and the 101 response.
export function rawWsConnect(srv, query = "EIO=4&transport=websocket", { path = EIO_PATH } = {}) {
  return wsConnect(srv.port, { path: `${path}?${query}`, host: `127.0.0.1:${srv.port}` });
}

// ---------------------------------------------------------------------------------------------
// One server per group; the group's last test checks /stats and stops it.
export function serverGroup(name, args, body) {
  describe(name, () => {
    const ctx = { srv: null, stopped: false, clients: new Set(), raws: new Set() };
    ctx.raw = async () => {
      const c = await RawConn.connect(ctx.srv.port);
      ctx.raws.add(c);
      return c;
    };
    ctx.rawWs = async (query, opts) => {
      const r = await rawWsConnect(ctx.srv, query, opts);
      ctx.raws.add(r.conn);
      return r;
    };
    ctx.ws = (url, opts) => {
      const c = new WsClient(url, opts);
      ctx.clients.add(c);
      return c;
    };
    ctx.wsOpen = async (opts) => {
      const r = await wsHandshake(ctx.srv, opts);
      ctx.clients.add(r.client);
      return r;
    };
    before(async () => {
      ctx.srv = await startEcho(args);
    });
    after(async () => {
      for (const c of ctx.clients) c.terminate();
      for (const c of ctx.raws) c.destroy();
      if (ctx.srv && !ctx.stopped) {
        ctx.stopped = true;
        await ctx.srv.stop();
      }
    });
    body(ctx);
    test("no sessions left and a clean shutdown", async () => {
      for (const c of ctx.clients) await c.close();
      for (const c of ctx.raws) c.destroy();
      let idleErr;
      try {
        await waitIdle(ctx.srv, { timeoutMs: 10000 });
      } catch (e) {
        idleErr = e;
      }
      ctx.stopped = true;
      await ctx.srv.stop();
      if (idleErr) throw idleErr;
    });
  });
}

