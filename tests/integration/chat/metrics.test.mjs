// GET /metrics (chat/metrics.c): the Prometheus text format, with the names the
// operations contract promises, and numbers that move with real traffic — connections
// by transport, handshakes, packets, deliveries, bytes, chat events, rate limits, the
// store's, acks' and deliveries' latency histograms, SSE streams, disconnects by reason.
// With PARLEY_TEST_WORKERS=3 the same assertions hold for the sum over the workers.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { SseStream } from "./sse.mjs";
import { Clients, POLLING, WS, newRoom, newUser, request, startParley, waitUntil } from "./util.mjs";

const WORKERS = Number(process.env.PARLEY_TEST_WORKERS || 1);

// The text format, read back: series text → value; and the families' TYPE lines.
function parse(text) {
  const series = new Map();
  const types = new Map();
  for (const line of text.split("\n")) {
    if (!line) continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1], type[2]);
    if (line.startsWith("#")) continue;
    const m = /^(\S+?(?:\{.*\})?) (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    series.set(m[1], Number(m[2]));
  }
  return { series, types };
}

describe("/metrics", () => {
  let srv, clients;

  before(async () => {
    srv = await startParley(["--store", "memory", "--rate-burst", "5", "--rate-per-sec", "1"]);
    clients = new Clients(srv);
  });

  after(async () => {
    clients?.closeAll();
    await srv?.stop();
  });

  const scrape = async () => {
    const r = await request(`${srv.url}/metrics`);
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers["content-type"], /^text\/plain; version=0\.0\.4/);
    return parse(r.text);
  };
  const value = (m, s) => m.series.get(s) ?? 0;

  test("the contract's names, with their types", async () => {
    const m = await scrape();
    const expected = {
      parley_connections: "gauge",
      parley_handshakes_total: "counter",
      parley_disconnects_total: "counter",
      parley_packets_received_total: "counter",
      parley_packets_sent_total: "counter",
      parley_deliveries_total: "counter",
      parley_delivery_latency_seconds: "histogram",
      parley_store_commit_seconds: "histogram",
      parley_ack_latency_seconds: "histogram",
      parley_rate_limited_total: "counter",
      parley_events_received_total: "counter",
      parley_sent_bytes_total: "counter",
      process_resident_memory_bytes: "gauge",
      process_cpu_seconds_total: "counter",
      process_open_fds: "gauge",
    };
    for (const [name, type] of Object.entries(expected)) assert.equal(m.types.get(name), type, name);
    assert.ok(m.series.has('parley_connections{transport="websocket"}'));
    assert.ok(m.series.has('parley_disconnects_total{reason="ping timeout"}'));
    assert.ok(value(m, "process_resident_memory_bytes") > 1e6, "RSS in bytes");
    assert.ok(value(m, "process_open_fds") > 3);
    // Only bounded label sets: no room or user ids.
    for (const s of m.series.keys()) assert.doesNotMatch(s, /room-|u\d+-/, s);
  });

  test("the numbers move with traffic", async () => {
    const before = await scrape();
    const room = newRoom();
    const [w, p] = [await clients.connect(newUser(), WS.opts), await clients.connect(newUser(), POLLING.opts)];
    await w.join(room);
    await p.join(room);
    const mid = await scrape();
    assert.ok(value(mid, 'parley_connections{transport="websocket"}') >= 1);
    assert.ok(value(mid, 'parley_connections{transport="polling"}') >= 1);
    assert.equal(value(mid, "parley_handshakes_total") - value(before, "parley_handshakes_total"), 2);
    const N = 3;
    for (let i = 0; i < N; i++) await w.send(room, `m${i}`);
    await p.rec.waitCount("newMessage", N);
    const m = await scrape();
    const d = (s) => value(m, s) - value(mid, s);
    assert.equal(d('parley_events_received_total{event="sendMessage"}'), N);
    assert.equal(d("parley_store_commit_seconds_count"), N);
    assert.equal(d("parley_ack_latency_seconds_count"), N);
    // Every process announces every message to its own members: once per worker.
    assert.equal(d("parley_delivery_latency_seconds_count"), N * WORKERS);
    assert.equal(value(m, 'parley_store_commit_seconds_bucket{le="+Inf"}'), value(m, "parley_store_commit_seconds_count"));
    assert.ok(value(m, "parley_delivery_latency_seconds_sum") >= 0);
    assert.ok(d("parley_deliveries_total") >= 2 * N, "each message to both members");
    assert.ok(d("parley_packets_received_total") >= N);
    assert.ok(d("parley_packets_sent_total") >= 3 * N, "newMessage to two, and the acks");
    assert.ok(d("parley_received_bytes_total") > 0 && d("parley_sent_bytes_total") > 0);
  });

  test("rate limits, SSE streams and disconnects are counted", async () => {
    const room = newRoom();
    const c = await clients.connect();
    await c.join(room);
    const before = await scrape();
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push(await c.ask("sendMessage", { roomId: room, text: `x${i}` }));
    const refused = answers.filter((a) => a?.error === "rate_limited").length;
    assert.ok(refused > 0, JSON.stringify(answers));
    const stream = await SseStream.open(`${srv.url}/api/rooms/${room}/events`, { authorization: `Bearer ${newUser().token}` });
    assert.equal(stream.status, 200);
    const mid = await scrape();
    assert.equal(value(mid, "parley_rate_limited_total") - value(before, "parley_rate_limited_total"), refused);
    assert.ok(value(mid, "parley_sse_streams") >= 1);
    stream.close();
    c.close();
    await waitUntil(async () => {
      const m = await scrape();
      return value(m, 'parley_disconnects_total{reason="transport close"}') > value(before, 'parley_disconnects_total{reason="transport close"}');
    }, { what: "the disconnect counted" });
  });

  test("HEAD is answered, other methods and bodies are refused", async () => {
    assert.equal((await request(`${srv.url}/metrics`, { method: "HEAD" })).status, 200);
    assert.equal((await request(`${srv.url}/metrics`, { method: "POST", body: "" })).status, 405);
  });
});
