// The parley program's own HTTP routes under hostile use (security review, issue 11).
//
// - /healthz answers GET and HEAD only (405 with Allow otherwise) and takes no body (413):
//   a POST with a 2 MiB body used to be read and answered 200 (defect 9).
// - The web page is served with its security headers: a Content-Security-Policy that only
//   allows the page's own scripts, styles, connections and images, no framing, no base
//   URI, no plugins; nosniff; X-Frame-Options DENY; Referrer-Policy no-referrer.
// - A client that pipelines 40 requests in one write and resets the connection at once
//   must not kill the server: writing to a reset socket raises SIGPIPE, whose default
//   action ends the process; main() ignores it (defect 1). Repeated, then the server must
//   still be serving.
import { test, describe, before, beforeEach, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { RawConn, rst } from "../lib/raw.mjs";
import { request, serverPerSuite, sleep, startParley, withTimeout } from "./util.mjs";

describe("parley's HTTP routes", () => {
  const box = serverPerSuite({ before, after, afterEach }, () => startParley(["--store", "memory"]));
  let srv;
  beforeEach(() => {
    ({ srv } = box);
  });

  // Sends raw request bytes on a new connection and reads one response.
  async function raw(bytes, o = {}) {
    const c = await RawConn.connect(srv.port);
    try {
      c.write(bytes);
      return await c.readResponse(o);
    } finally {
      c.destroy();
    }
  }

  describe("/healthz", () => {
    test("GET and HEAD answer 200", async () => {
      const r = await request(`${srv.url}/healthz`);
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.text).status, "ok");
      const h = await request(`${srv.url}/healthz`, { method: "HEAD" });
      assert.equal(h.status, 200);
      assert.equal(h.text, "");
    });

    test("a POST with a 2 MiB body is answered 405 at once, without the body being read", async () => {
      // Only the head is sent: the answer must not wait for a body that never comes.
      const r = await raw("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n", {
        timeoutMs: 3000,
      });
      assert.equal(r.status, 405);
      assert.equal(r.headers.allow, "GET, HEAD");
    });

    test("other methods are 405 with Allow: GET, HEAD", async () => {
      for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
        const r = await request(`${srv.url}/healthz`, { method, body: method === "DELETE" ? undefined : "{}" });
        assert.equal(r.status, 405, method);
        assert.equal(r.headers.allow, "GET, HEAD", method);
      }
    });

    test("a GET with a body is refused (413) and the connection closed", async () => {
      const c = await RawConn.connect(srv.port);
      try {
        c.write("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        const r = await c.readResponse(3000);
        assert.equal(r.status, 413);
        assert.equal(JSON.parse(r.text).error, "too_large");
        assert.ok(await c.closesWithin(3000), "closed after the answer");
      } finally {
        c.destroy();
      }
      const chunked = await raw("GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 3000);
      assert.equal(chunked.status, 413);
    });
  });

  describe("security headers of the web page", () => {
    const CSP_DIRECTIVES = {
      "default-src": ["'self'"],
      "script-src": ["'self'"],
      "style-src": ["'self'"],
      "img-src": ["'self'", "data:"],
      "frame-ancestors": ["'none'"],
      "base-uri": ["'none'"],
      "object-src": ["'none'"],
      "form-action": ["'self'"],
      // The page's own origin over HTTP and WebSocket ('self' covers ws:/wss: to it, CSP 3).
      "connect-src": ["'self'"],
    };

    function checkHeaders(r, what) {
      assert.equal(r.headers["x-content-type-options"], "nosniff", what);
      assert.equal(r.headers["x-frame-options"], "DENY", what);
      assert.equal(r.headers["referrer-policy"], "no-referrer", what);
      const csp = r.headers["content-security-policy"];
      assert.ok(csp, `${what}: a Content-Security-Policy`);
      const directives = Object.fromEntries(
        csp
          .split(";")
          .map((d) => d.trim().split(/\s+/))
          .filter((d) => d[0])
          .map(([name, ...values]) => [name, values]),
      );
      for (const [name, values] of Object.entries(CSP_DIRECTIVES)) assert.deepEqual(directives[name], values, `${what}: ${name}`);
      assert.ok(!/unsafe-inline|unsafe-eval|\*/.test(csp), `${what}: nothing unsafe in ${csp}`);
    }

    test("the page and its files carry the headers", async () => {
      for (const p of ["/", "/index.html", "/app.js", "/style.css", "/favicon.svg"]) {
        const r = await request(`${srv.url}${p}`);
        assert.equal(r.status, 200, p);
        checkHeaders(r, p);
      }
    });

    test("so do 304 answers", async () => {
      const first = await request(`${srv.url}/`);
      const r = await request(`${srv.url}/`, { headers: { "if-none-match": first.headers.etag } });
      assert.equal(r.status, 304);
      checkHeaders(r, "304");
    });

    test("the page has no inline script or style the policy would block", async () => {
      const html = (await request(`${srv.url}/`)).text;
      for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
        assert.match(m[1], /\bsrc=/, `every script has a src: ${m[0].slice(0, 80)}`);
        assert.equal(m[2].trim(), "", "no inline script body");
      }
      assert.ok(!/<style\b/i.test(html), "no <style> element");
      assert.ok(!/\sstyle=/i.test(html), "no style attribute");
      assert.ok(!/\son[a-z]+=/i.test(html), "no inline event handler");
    });
  });

  describe("a client that resets its connection", () => {
    // Writing to a socket that the peer reset after its FIN (the server in CLOSE_WAIT)
    // fails with EPIPE and raises SIGPIPE. The recipe: 40 pipelined requests for the client
    // bundle (154 KB each, so the server's output passes its limit and it stops reading,
    // with a write pending), the client's FIN, then a close with the answers unread, which
    // the kernel turns into a RST. Also the plain variant: requests then resetAndDestroy.
    async function pipelineAndReset(pathName, { fin }) {
      const s = net.connect(srv.port, "127.0.0.1");
      const connectedOrNot = new Promise((resolve, reject) => {
        s.once("connect", resolve);
        s.once("error", reject);
      });
      await withTimeout(connectedOrNot, 3000, "TCP connect");
      s.on("error", () => {}); // the reset's own ECONNRESET
      s.write(`GET ${pathName} HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(40));
      if (fin) {
        s.end();
        await sleep(100); // the server answers until its output limit, then waits to write
        s.destroy(); // unread answers: the close is a RST
      } else {
        rst(s);
      }
      await sleep(50);
    }

    test("40 pipelined requests then a RST, repeated, do not kill the server", async () => {
      for (let round = 0; round < 4; round++) {
        for (const [pathName, fin] of [
          ["/socket.io/socket.io.js", true],
          ["/healthz", false],
        ]) {
          await pipelineAndReset(pathName, { fin });
          const what = `round ${round}, ${pathName}${fin ? " (FIN, then RST)" : " (RST)"}`;
          assert.equal(srv.process.signalCode, null, `${what}: the server was killed by ${srv.process.signalCode}`);
          assert.equal(srv.process.exitCode, null, `${what}: the server exited`);
        }
      }
      const r = await request(`${srv.url}/healthz`);
      assert.equal(r.status, 200, "still serving");
    });
  });
});
