// HTTP requests through node:http, for the suites that want a real HTTP client rather than
// hand-written bytes (for those, see ./raw.mjs).
//
// Each request has its own TCP connection by default (agent: false), so that a server's
// connection counts are not inflated by keep-alive sockets pooled on the client side.
import http from "node:http";

// One HTTP request. Resolves to { status, headers, body: Buffer, text: string, json() }, or
// rejects on a transport error (reset, refused, timeout).
// opts: method, body (string|Buffer), headers, timeoutMs, agent (false, or an http.Agent),
// chunked (send the body with Transfer-Encoding: chunked, in pieces of `chunked` bytes),
// onRequest(req) (called with the ClientRequest, e.g. to destroy it later), localAddress
// (the source address, e.g. 127.0.0.2, to appear as another client).
export function request(url, opts = {}) {
  const { method = "GET", body, headers = {}, timeoutMs = 5000, agent = false, chunked = 0, onRequest, localAddress } = opts;
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined && !chunked) h["content-length"] = Buffer.byteLength(body);
    const req = http.request(url, { method, headers: h, agent, localAddress });
    const timer = setTimeout(() => {
      req.destroy(new Error(`HTTP ${method} ${url} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      res.on("end", () => {
        clearTimeout(timer);
        const buf = Buffer.concat(chunks);
        const text = buf.toString("utf8");
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: buf,
          text,
          json: () => JSON.parse(text),
        });
      });
    });
    if (onRequest) onRequest(req);
    if (body !== undefined && chunked) {
      const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
      let off = 0;
      const pump = () => {
        while (off < b.length) {
          const piece = b.subarray(off, off + chunked);
          off += piece.length;
          if (!req.write(piece)) {
            req.once("drain", pump);
            return;
          }
        }
        req.end();
      };
      pump();
    } else {
      req.end(body);
    }
  });
}

// GET url → its JSON body; throws unless the answer is 200.
export async function getJson(url, opts) {
  const r = await request(url, opts);
  if (r.status !== 200) throw new Error(`${new URL(url).pathname} answered ${r.status}: ${r.text}`);
  return r.json();
}
