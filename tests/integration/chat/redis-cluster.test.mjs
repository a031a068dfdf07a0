// Two parley nodes whose Socket.IO adapter runs on a real Redis Cluster of three masters
// (--redis-cluster --redis-mode sharded: each channel published and subscribed on the
// master that owns its slot) while the chat's shared state is on a plain redis-server
// (--chat-redis-url: history and presence scripts span keys that a cluster would spread
// over slots; docs/CLUSTER.md). Messages, typing and /api/emit cross the nodes; each
// room's channel is subscribed on its own master by the nodes that have members in it
// (letting go of it once the room empties is tested without recovery, where it is at
// once: tests/integration/cluster/redis-node.test.mjs in the cluster mode).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";

import { createCluster } from "redis";

import { startRedis, startRedisCluster } from "../lib/redis.mjs";
import { buildDir, processExit } from "../lib/server.mjs";
import { Clients, newRoom, request, startParley, waitUntil } from "./util.mjs";

const KEY = "cluster-api-key-0123456789";

describe("two nodes on a Redis Cluster", () => {
  let cluster, chatRedis, admin, a, b, ca, cb;

  before(async () => {
    [cluster, chatRedis] = await Promise.all([startRedisCluster(3), startRedis()]);
    admin = createCluster({ rootNodes: [{ url: cluster.url }] });
    await admin.connect();
    const args = [
      "--store", "redis", "--redis-url", cluster.url, "--redis-cluster", "--redis-mode", "sharded",
      "--chat-redis-url", chatRedis.url, "--api-key", KEY,
    ];
    [a, b] = await Promise.all([startParley(args), startParley(args)]);
    ca = new Clients(a);
    cb = new Clients(b);
  });

  after(async () => {
    ca?.closeAll();
    cb?.closeAll();
    await a?.stop();
    await b?.stop();
    await admin?.quit().catch(() => {});
    await cluster?.stop();
    await chatRedis?.stop();
  });

  const shardSubscribers = async (channel) =>
    Number((await admin.sendCommand(channel, true, ["PUBSUB", "SHARDNUMSUB", channel]))[1]);

  test("messages, typing and /api/emit reach the other node, for rooms on each master", async () => {
    // One room whose channel lands on each of the three masters.
    const byMaster = new Map();
    while (byMaster.size < 3) {
      const room = newRoom();
      const channel = `socket.io#/#${room}#`;
      const slot = Number(await admin.sendCommand(channel, true, ["CLUSTER", "KEYSLOT", channel]));
      const { port } = admin.getSlotMaster(slot);
      if (!byMaster.has(port)) byMaster.set(port, room);
    }
    for (const room of byMaster.values()) {
      const [x, y] = [await ca.connect(), await cb.connect()];
      await x.join(room);
      await y.join(room);
      const channel = `socket.io#/#${room}#`;
      await waitUntil(async () => (await shardSubscribers(channel)) === 2, { what: `both nodes on ${channel}` });
      // A message (the chat's Redis) and typing (the adapter, over the cluster).
      const ack = await x.send(room, `hello ${room}`);
      await waitUntil(() => y.rec.of("newMessage").some((m) => m.id === ack.id), { what: "y got the message" });
      assert.deepEqual(await y.ask("typing", { roomId: room, isTyping: true }), { ok: true });
      await waitUntil(() => x.rec.of("userTyping").some((t) => t.roomId === room && t.isTyping), { what: "x saw y typing" });
      // /api/emit on node a reaches y on node b.
      const res = await request(`${a.url}/api/emit`, {
        method: "POST",
        headers: { "x-api-key": KEY, "content-type": "application/json" },
        body: JSON.stringify({ room, event: "announcement", data: { room } }),
      });
      assert.equal(res.status, 200, res.text);
      await waitUntil(() => y.rec.of("announcement").some((d) => d.room === room), { what: "y got the announcement" });
    }
  });

  test("--redis-cluster is refused without --chat-redis-url or in classic mode", async () => {
    for (const extra of [["--redis-mode", "sharded"], ["--chat-redis-url", chatRedis.url]]) {
      const child = spawn(`${buildDir}/parley`, ["--port", "0", "--redis-url", cluster.url, "--redis-cluster", ...extra], { stdio: "ignore" });
      const { code } = await processExit(child);
      assert.equal(code, 2, extra.join(" "));
    }
  });
});
