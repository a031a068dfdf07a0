// bench/node/notify-sink.mjs — the fast receiver of scripts/bench-members.sh: what
// `parley --notify-url` posts to, answering every request 204 as soon as its body is
// read (no signature check: the bench measures Parley's side, not a receiver's).
// Listens on 127.0.0.1 (--port, 0: the kernel's pick), prints "listening 127.0.0.1:PORT"
// once ready and, on SIGTERM, one JSON line {requests, bytes, messages} before exiting:
// requests and body bytes received, and messages counted as the "seq" fields of the
// bodies (what the batches carried; a body's JSON is not parsed).
import http from "node:http";

const args = process.argv.slice(2);
const at = args.indexOf("--port");
const port = at >= 0 ? Number(args[at + 1]) : 0;
let requests = 0;
let bytes = 0;
let messages = 0;

const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const parts = [];
  req.on("data", (d) => parts.push(d));
  req.on("end", () => {
    const body = Buffer.concat(parts);
    requests += 1;
    bytes += body.length;
    for (let i = body.indexOf('"seq":'); i >= 0; i = body.indexOf('"seq":', i + 6)) messages += 1;
    res.writeHead(204).end();
  });
});
server.listen(port, "127.0.0.1", () => {
  console.log(`listening 127.0.0.1:${server.address().port}`);
});
process.on("SIGTERM", () => {
  console.log(JSON.stringify({ requests, bytes, messages }));
  process.exit(0);
});
