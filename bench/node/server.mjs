// bench/node/server.mjs — the reference chat server for parley-bench: idiomatic
// socket.io 4.8 implementing the chat contract of docs/CHAT-API.md as far as the
// benchmarks use it, so that both servers run exactly the same load.
//
//   auth        middleware verifying an HS256 JWT from auth.token (node:crypto; claims
//               sub, name; exp/nbf with 30 s leeway) → connect_error "Authentication failed"
//   joinRoom    {roomId} → ack {ok, roomId, members}; messageHistory (last 50) to the
//               joiner; userJoined to the others when the user was not present already
//               (rooms of at most 1,000 members, as Parley's --presence-limit)
//   sendMessage {roomId, text} → newMessage {id, seq, roomId, userId, username, text,
//               timestamp} to the room, sender included; ack {ok, id, seq, timestamp}
//   leaveRoom   {roomId} → ack {ok}; userLeft as on disconnect
//
// History is kept in memory only (no database): every message stays in an array per
// room, like Parley's `--store memory`, which is how Parley is run beside it. There is
// no rate limit. typing, markRead, sendDirect and history are not implemented: the
// benchmarks do not use them. No connection state recovery (run Parley with
// --no-recovery for the same wire traffic).
//
// usage: node server.mjs [--port N] [--host H] [--tls-cert PEM --tls-key PEM] [--deflate]
//        (or PORT, HOST; JWT secret in PARLEY_JWT_SECRET or JWT_SECRET). Prints "listening
//        HOST:PORT" once ready. With --tls-cert and --tls-key: https and wss
//        (https.createServer with Node's defaults), as parley --tls-cert/--tls-key.
//        --deflate: engine.io's perMessageDeflate (threshold 1024, as parley --ws-deflate).
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

const { values: args } = parseArgs({
  options: {
    port: { type: "string" },
    host: { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    deflate: { type: "boolean" },
  },
});
const port = Number(args.port ?? process.env.PORT ?? 3000);
const host = args.host ?? process.env.HOST ?? "127.0.0.1";
const secret = process.env.PARLEY_JWT_SECRET ?? process.env.JWT_SECRET;
if (!secret) {
  console.error("set PARLEY_JWT_SECRET (or JWT_SECRET)");
  process.exit(2);
}
const MAX_TEXT = 4000;
const HISTORY = 50;
const PRESENCE_LIMIT = 1000;
const LEEWAY_S = 30;

// HS256 only; returns the claims or null.
function verifyJwt(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const header = JSON.parse(Buffer.from(parts[0], "base64url"));
    if (header.alg !== "HS256") return null;
    const mac = createHmac("sha256", secret).update(`${parts[0]}.${parts[1]}`).digest();
    const sig = Buffer.from(parts[2], "base64url");
    if (sig.length !== mac.length || !timingSafeEqual(sig, mac)) return null;
    const claims = JSON.parse(Buffer.from(parts[1], "base64url"));
    const now = Date.now() / 1000;
    if (typeof claims.sub !== "string" || !claims.sub) return null;
    if (typeof claims.exp === "number" && now > claims.exp + LEEWAY_S) return null;
    if (typeof claims.nbf === "number" && now < claims.nbf - LEEWAY_S) return null;
    return claims;
  } catch {
    return null;
  }
}

// roomId: 1–128 bytes of printable UTF-8.
function validRoom(roomId) {
  return (
    typeof roomId === "string" &&
    roomId.length > 0 &&
    Buffer.byteLength(roomId) <= 128 &&
    !/[\u0000-\u001f\u007f]/.test(roomId)
  );
}

const rooms = new Map(); // roomId → { seq, messages: [], presence: Map userId → sockets }
function room(roomId) {
  let r = rooms.get(roomId);
  if (!r) rooms.set(roomId, (r = { seq: 0, messages: [], presence: new Map() }));
  return r;
}

if (!args["tls-cert"] !== !args["tls-key"]) {
  console.error("--tls-cert and --tls-key go together");
  process.exit(2);
}
const httpServer = args["tls-cert"]
  ? createTlsServer({ cert: readFileSync(args["tls-cert"]), key: readFileSync(args["tls-key"]) })
  : createServer();
const io = new Server(httpServer, { serveClient: false, ...(args.deflate ? { perMessageDeflate: { threshold: 1024 } } : {}) });

io.use((socket, next) => {
  const claims = verifyJwt(socket.handshake.auth?.token);
  if (!claims) return next(new Error("Authentication failed"));
  socket.data.userId = claims.sub;
  socket.data.username = typeof claims.name === "string" ? claims.name : claims.sub;
  next();
});

const isChatRoom = (socket, roomId) => roomId !== socket.id && !roomId.startsWith("user:");
const roomSize = (roomId) => io.sockets.adapter.rooms.get(roomId)?.size ?? 0;

function leave(socket, roomId) {
  const r = rooms.get(roomId);
  const { userId, username } = socket.data;
  const size = roomSize(roomId); // the leaver still counted
  socket.leave(roomId);
  if (!r) return;
  const n = r.presence.get(userId) - 1;
  if (n > 0) return r.presence.set(userId, n);
  r.presence.delete(userId);
  if (size <= PRESENCE_LIMIT) socket.to(roomId).emit("userLeft", { userId, username, roomId });
}

io.on("connection", (socket) => {
  const { userId, username } = socket.data;
  socket.join(`user:${userId}`);

  socket.on("joinRoom", (p, ack = () => {}) => {
    const roomId = p?.roomId;
    if (!validRoom(roomId)) return ack({ ok: false, error: "invalid_payload" });
    if (!isChatRoom(socket, roomId) || io.sockets.sockets.has(roomId))
      return ack({ ok: false, error: "forbidden" });
    const r = room(roomId);
    if (!socket.rooms.has(roomId)) {
      socket.join(roomId);
      const n = r.presence.get(userId) ?? 0;
      r.presence.set(userId, n + 1);
      if (n === 0 && roomSize(roomId) <= PRESENCE_LIMIT)
        socket.to(roomId).emit("userJoined", { userId, username, roomId });
    }
    socket.emit("messageHistory", r.messages.slice(-HISTORY));
    const members = [];
    for (const id of r.presence.keys()) {
      if (members.length === 100) break;
      members.push(id);
    }
    ack({ ok: true, roomId, members });
  });

  socket.on("sendMessage", (p, ack = () => {}) => {
    const roomId = p?.roomId;
    if (validRoom(roomId) && !(socket.rooms.has(roomId) && isChatRoom(socket, roomId)))
      return ack({ ok: false, error: "not_in_room" });
    const text = p?.text;
    if (!validRoom(roomId) || typeof text !== "string" || text.length === 0)
      return ack({ ok: false, error: "invalid_payload" });
    // UTF-16 units are at least the code points: count only when it could matter.
    if (text.length > MAX_TEXT && [...text].length > MAX_TEXT)
      return ack({ ok: false, error: "too_long" });
    const r = room(roomId);
    const msg = {
      id: randomUUID(),
      seq: ++r.seq,
      roomId,
      userId,
      username,
      text,
      timestamp: Date.now(),
    };
    r.messages.push(msg);
    io.to(roomId).emit("newMessage", msg);
    ack({ ok: true, id: msg.id, seq: msg.seq, timestamp: msg.timestamp });
  });

  socket.on("leaveRoom", (p, ack = () => {}) => {
    const roomId = p?.roomId;
    if (validRoom(roomId) && socket.rooms.has(roomId) && isChatRoom(socket, roomId))
      leave(socket, roomId);
    ack({ ok: true });
  });

  socket.on("disconnecting", () => {
    for (const roomId of socket.rooms) if (isChatRoom(socket, roomId)) leave(socket, roomId);
  });
});

httpServer.listen(port, host, () => {
  const a = httpServer.address();
  console.log(`listening ${a.address}:${a.port}`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => io.close(() => process.exit(0)));
