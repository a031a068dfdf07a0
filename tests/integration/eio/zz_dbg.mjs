import { startEcho, request, pollUrl, pollingHandshake, pool, getStats } from "./util.mjs";
const srv = await startEcho(["--ping-interval", "200", "--ping-timeout", "200"]);
const fails = [];
await pool(2000, 200, async (i) => {
  const t0 = Date.now();
  const { sid } = await pollingHandshake(srv);
  const t1 = Date.now();
  const r = await request(pollUrl(srv, sid), { method: "POST", body: "1" });
  if (r.status !== 200) fails.push(`${i} hs ${t1 - t0}ms post after ${Date.now() - t1}ms: ${r.status} ${r.text}`);
});
console.log(fails.length, fails.slice(0, 10));
console.log(await getStats(srv));
await srv.stop();
