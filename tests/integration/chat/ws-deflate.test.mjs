// parley --ws-deflate: permessage-deflate (RFC 7692) with the official socket.io-client
// (whose `ws` offers the extension by default and compresses what it sends from 1024
// bytes) and with raw WebSocket clients that write every frame by hand:
// - the negotiation: what is answered to good, limited and bad offers, and to none;
// - chat messages above and below the threshold arrive intact, the long ones compressed
//   on the wire (RSV1, inflated here with node:zlib) and the short ones not;
// - a broadcast to many clients is compressed once: /metrics counts one deflate run and
//   one compressed frame per recipient;
// - inbound: fragmented compressed messages, a zip bomb closed with 1009 while the others
//   carry on, corrupt data 1007, RSV1 where it is not allowed 1002.
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { after, before, describe, test } from "node:test";

import { OP, RawConn, acceptFor, frame, handshakeRequest } from "../lib/raw.mjs";
import { Clients, newRoom, newUser, request, startParley, waitUntil } from "./util.mjs";

const WS_PATH = "/socket.io/?EIO=4&transport=websocket";
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

// What a client sends: raw DEFLATE, sync flush, the trailing 00 00 ff ff cut off.
function compress(text) {
  const out = zlib.deflateRawSync(Buffer.from(text), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.deepEqual(out.subarray(-4), TAIL);
  return out.subarray(0, -4);
}

function inflate(payload) {
  return zlib.inflateRawSync(Buffer.concat([payload, TAIL]), { finishFlush: zlib.constants.Z_SYNC_FLUSH }).toString("utf8");
}

// A raw WebSocket handshake on /socket.io/ with a Sec-WebSocket-Extensions offer (none when
// undefined). Resolves with { conn, response }, the Engine.IO open packet already read.
async function rawConnect(port, offer) {
  const conn = await RawConn.connect(port);
  const extra = offer === undefined ? [] : [["Sec-WebSocket-Extensions", offer]];
  const { raw, key } = handshakeRequest({ path: WS_PATH, extra });
  conn.write(raw);
  const response = await conn.readResponse();
  assert.equal(response.status, 101);
  assert.equal(response.headers["sec-websocket-accept"], acceptFor(key));
  const open = await conn.readFrame();
  assert.equal(open.rsv, 0, "the open packet is never compressed");
  assert.match(open.text, /^0\{"sid"/);
  return { conn, response };
}

// A frame's text: inflated when RSV1 says it is compressed.
const textOf = (f) => (f.rsv & 4 ? inflate(f.payload) : f.text);

// Reads frames until one whose text satisfies pred; returns { f, text }.
async function readUntil(conn, pred) {
  for (;;) {
    const f = await conn.readFrame({ timeoutMs: 5000 });
    const text = textOf(f);
    if (pred(text)) return { f, text };
  }
}

// The close frame the server sends (after any other frames), and that it then closes.
async function closeCode(conn) {
  for (;;) {
    const f = await conn.frameOrClose({ timeoutMs: 5000 });
    assert.ok(f, "a close frame before the connection ends");
    if (f.opcode === OP.CLOSE) {
      await conn.waitClosed();
      return f.code;
    }
  }
}

describe("parley --ws-deflate", () => {
  let srv, clients;

  before(async () => {
    srv = await startParley(["--store", "memory", "--ws-deflate"]);
    clients = new Clients(srv);
  });

  after(async () => {
    clients?.closeAll();
    await srv?.stop();
    srv?.cleanup();
  });

  const metrics = async () => {
    const r = await request(`${srv.url}/metrics`);
    assert.equal(r.status, 200);
    const m = {};
    for (const line of r.text.split("\n")) {
      const x = /^(parley_ws_\S+) (\S+)$/.exec(line);
      if (x) m[x[1]] = Number(x[2]);
    }
    return m;
  };

  test("the negotiation: answers to offers", async () => {
    const cases = [
      // Chrome's and ws's offer: the server adds both no_context_takeover parameters.
      ["permessage-deflate; client_max_window_bits", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
      ["permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"],
      // The first acceptable offer of a list wins.
      ["x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=7, permessage-deflate", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
      // Declined: an unknown parameter, a repeated one; and no offer at all.
      ["permessage-deflate; foo", undefined],
      ["permessage-deflate; server_no_context_takeover; server_no_context_takeover", undefined],
      [undefined, undefined],
    ];
    for (const [offer, answer] of cases) {
      const { conn, response } = await rawConnect(srv.port, offer);
      assert.equal(response.headers["sec-websocket-extensions"], answer, `offer ${offer}`);
      conn.destroy();
    }
  });

  test("chat messages above and below the threshold arrive intact; only long ones are compressed", async () => {
    const room = newRoom("deflate");
    const alice = await clients.connect();
    const bob = await clients.connect();
    await alice.join(room);
    await bob.join(room);
    // A raw member of the room to see the frames themselves.
    const user = newUser();
    const { conn } = await rawConnect(srv.port, "permessage-deflate; client_max_window_bits");
    conn.write(frame({ opcode: OP.TEXT, payload: `40${JSON.stringify({ token: user.token })}` }));
    await readUntil(conn, (t) => t.startsWith("40{"));
    conn.write(frame({ opcode: OP.TEXT, payload: `420["joinRoom",{"roomId":"${room}"}]` }));
    await readUntil(conn, (t) => t.startsWith("430"));

    const before = await metrics();
    const short = "short message ".repeat(5);
    const long = Array.from({ length: 300 }, (_, i) => `word${i % 17}`).join(" "); // > 1024 bytes
    assert.ok(Buffer.byteLength(long) > 1500 && long.length < 4000);
    await alice.send(room, short);
    await alice.send(room, long);
    await bob.rec.waitCount("newMessage", 2);
    assert.deepEqual(bob.rec.of("newMessage").map((m) => m.text), [short, long]);

    const a = await readUntil(conn, (t) => t.includes('"newMessage"'));
    assert.equal(a.f.rsv, 0, "a message under the threshold goes plain");
    assert.equal(JSON.parse(a.text.slice(2))[1].text, short);
    const b = await readUntil(conn, (t) => t.includes('"newMessage"'));
    assert.equal(b.f.rsv, 4, "a long message goes compressed (RSV1)");
    assert.ok(b.f.payload.length < Buffer.byteLength(b.text) / 2, `compressed ${b.f.payload.length} bytes of ${b.text.length}`);
    assert.equal(JSON.parse(b.text.slice(2))[1].text, long);

    const m = await metrics();
    // socket.io-client's ws compressed alice's long sendMessage (1024 bytes and up).
    assert.ok(m.parley_ws_inflate_messages_total >= before.parley_ws_inflate_messages_total + 1);
    assert.ok(m.parley_ws_zlib_bytes > 0);
    assert.equal(m.parley_ws_inflaters, 0, "no connection keeps an inflate stream of its own");
    conn.destroy();
    clients.closeOne(alice);
    clients.closeOne(bob);
  });

  test("a broadcast to many clients is compressed once", async () => {
    const room = newRoom("fanout");
    const n = 30;
    const members = [];
    for (let i = 0; i < n; i++) members.push(await clients.connect());
    for (const c of members) await c.join(room);
    const text = Array.from({ length: 250 }, (_, i) => `token${i % 23}`).join(" ");
    const before = await metrics();
    await members[0].send(room, text);
    for (const c of members) await c.rec.waitCount("newMessage", 1);
    for (const c of members) assert.equal(c.rec.of("newMessage")[0].text, text);
    // The frames are counted as they are queued; every member has its copy by now.
    const m = await metrics();
    assert.equal(m.parley_ws_deflate_messages_total - before.parley_ws_deflate_messages_total, 1, "one deflate run");
    assert.equal(m.parley_ws_deflate_frames_total - before.parley_ws_deflate_frames_total, n, "one compressed frame per member");
    assert.ok(m['parley_ws_deflate_bytes_total{stage="out"}'] < m['parley_ws_deflate_bytes_total{stage="in"}']);
    for (const c of members) clients.closeOne(c);
  });

  test("a fragmented compressed message is understood", async () => {
    const { conn } = await rawConnect(srv.port, "permessage-deflate");
    const user = newUser();
    const z = compress(`40${JSON.stringify({ token: user.token })}`);
    const cut = [z.subarray(0, 3), z.subarray(3, 7), z.subarray(7)];
    conn.write(frame({ fin: false, rsv: 4, opcode: OP.TEXT, payload: cut[0] }));
    conn.write(frame({ fin: false, opcode: OP.CONT, payload: cut[1] }));
    // A ping in the middle of a fragmented message is allowed, and answered.
    conn.write(frame({ opcode: OP.PING, payload: "p" }));
    conn.write(frame({ fin: true, opcode: OP.CONT, payload: cut[2] }));
    const pong = await conn.readFrame();
    assert.equal(pong.opcode, OP.PONG);
    const { text } = await readUntil(conn, (t) => t.startsWith("4"));
    assert.match(text, /^40\{"sid"/);
    conn.destroy();
  });

  test("a zip bomb closes that connection with 1009; the others carry on", async () => {
    const room = newRoom("bomb");
    const alice = await clients.connect();
    const bob = await clients.connect();
    await alice.join(room);
    await bob.join(room);
    const { conn } = await rawConnect(srv.port, "permessage-deflate");
    // 20 MB of one character: ~20 KB compressed, far over the 1 MB message limit.
    const bomb = compress(`42["x","${"a".repeat(20e6)}"]`);
    assert.ok(bomb.length < 64 * 1024);
    conn.write(frame({ rsv: 4, opcode: OP.TEXT, payload: bomb }));
    assert.equal(await closeCode(conn), 1009);
    await alice.send(room, "still here");
    await bob.rec.waitCount("newMessage", 1);
    assert.equal(bob.rec.of("newMessage")[0].text, "still here");
    clients.closeOne(alice);
    clients.closeOne(bob);
  });

  test("corrupt compressed data closes with 1007; RSV1 where it is not allowed with 1002", async () => {
    let { conn } = await rawConnect(srv.port, "permessage-deflate");
    conn.write(frame({ rsv: 4, opcode: OP.TEXT, payload: Buffer.from([0x07, 0x00, 0x11]) }));
    assert.equal(await closeCode(conn), 1007);

    const bad = [
      // No extension negotiated: RSV1 means nothing.
      [undefined, [frame({ rsv: 4, opcode: OP.TEXT, payload: compress("40") })]],
      // On a continuation frame, on control frames; and RSV2.
      ["permessage-deflate", [frame({ fin: false, rsv: 4, opcode: OP.TEXT, payload: compress("40").subarray(0, 1) }), frame({ rsv: 4, opcode: OP.CONT, payload: compress("40").subarray(1) })]],
      ["permessage-deflate", [frame({ rsv: 4, opcode: OP.PING, payload: "x" })]],
      ["permessage-deflate", [frame({ rsv: 4, opcode: OP.CLOSE, payload: Buffer.from([0x03, 0xe8]) })]],
      ["permessage-deflate", [frame({ rsv: 2, opcode: OP.TEXT, payload: "40" })]],
    ];
    for (const [offer, frames] of bad) {
      ({ conn } = await rawConnect(srv.port, offer));
      for (const f of frames) conn.write(f);
      assert.equal(await closeCode(conn), 1002, `offer ${offer}`);
    }
    // The server is fine.
    const c = await clients.connect();
    clients.closeOne(c);
  });
});

describe("parley --ws-deflate --ws-deflate-client-context", () => {
  let srv;

  before(async () => {
    srv = await startParley(["--store", "memory", "--ws-deflate", "--ws-deflate-client-context", "--ws-deflate-threshold", "0"]);
  });

  after(async () => {
    await srv?.stop();
    srv?.cleanup();
  });

  test("a client that keeps its context gets an inflate stream of its own, counted", async () => {
    const { conn, response } = await rawConnect(srv.port, "permessage-deflate; client_max_window_bits");
    assert.equal(response.headers["sec-websocket-extensions"], "permessage-deflate; server_no_context_takeover");
    const gauge = async () => {
      const r = await request(`${srv.url}/metrics`);
      return Number(/^parley_ws_inflaters (\S+)$/m.exec(r.text)[1]);
    };
    assert.equal(await gauge(), 1);
    // Two messages from one deflate stream: the second refers back into the first.
    const z = zlib.createDeflateRaw();
    const next = (text) =>
      new Promise((resolve) => {
        const parts = [];
        const onData = (d) => parts.push(d);
        z.on("data", onData);
        z.write(text);
        z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          z.off("data", onData);
          resolve(Buffer.concat(parts).subarray(0, -4));
        });
      });
    const user = newUser();
    conn.write(frame({ rsv: 4, opcode: OP.TEXT, payload: await next(`40${JSON.stringify({ token: user.token })}`) }));
    await readUntil(conn, (t) => t.startsWith("40{"));
    const room = newRoom("context");
    conn.write(frame({ rsv: 4, opcode: OP.TEXT, payload: await next(`420["joinRoom",{"roomId":"${room}"}]`) }));
    await readUntil(conn, (t) => t.startsWith("430"));
    // The same event again, with another ack id: mostly a reference into the last message,
    // which only the connection's kept stream can resolve.
    const again = await next(`421["joinRoom",{"roomId":"${room}"}]`);
    assert.ok(again.length < 20, `the second message is mostly a back-reference (${again.length} bytes)`);
    conn.write(frame({ rsv: 4, opcode: OP.TEXT, payload: again }));
    await readUntil(conn, (t) => t.startsWith("431"));
    z.close();
    conn.destroy();
    await waitUntil(async () => (await gauge()) === 0, { what: "the inflate stream to be freed" });
  });

  test("a client that offers client_no_context_takeover gets the shared stream", async () => {
    const { conn, response } = await rawConnect(srv.port, "permessage-deflate; client_no_context_takeover");
    assert.equal(response.headers["sec-websocket-extensions"], "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    const r = await request(`${srv.url}/metrics`);
    assert.match(r.text, /^parley_ws_inflaters 0$/m);
    conn.destroy();
  });
});
