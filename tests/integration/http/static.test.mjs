// Static files (src/http/static.c) through eio_echo --static: types, ETag/304, HEAD,
// precompressed gzip, changed files, and refusal of paths outside the root.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import net from "node:net";
import zlib from "node:zlib";
import { startServer } from "../lib/server.mjs";

describe("static files", () => {
  let srv, dir;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-static-"));
    fs.writeFileSync(path.join(dir, "index.html"), "<!doctype html><p>hello</p>");
    fs.writeFileSync(path.join(dir, "app.js"), "console.log(1);\n".repeat(100));
    fs.writeFileSync(path.join(dir, "app.js.gz"), zlib.gzipSync(fs.readFileSync(path.join(dir, "app.js"))));
    fs.mkdirSync(path.join(dir, "sub"));
    fs.writeFileSync(path.join(dir, "sub", "data.json"), '{"a":1}');
    fs.writeFileSync(path.join(dir, ".secret"), "no");
    srv = await startServer("eio_echo", ["--static", dir]);
  });
  after(async () => {
    await srv.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("serves / as index.html with its type and an ETag", async () => {
    const r = await fetch(srv.url + "/");
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "text/html; charset=utf-8");
    assert.match(r.headers.get("etag"), /^"[0-9a-f-]+"$/);
    assert.equal(await r.text(), "<!doctype html><p>hello</p>");
  });

  it("answers If-None-Match with 304 and no body", async () => {
    const etag = (await fetch(srv.url + "/sub/data.json")).headers.get("etag");
    const r = await fetch(srv.url + "/sub/data.json", { headers: { "If-None-Match": etag } });
    assert.equal(r.status, 304);
    assert.equal(await r.text(), "");
  });

  it("sends the precompressed file to gzip clients only", async () => {
    const gz = await fetch(srv.url + "/app.js", { headers: { "Accept-Encoding": "gzip" } });
    assert.equal(gz.headers.get("content-encoding"), "gzip");
    assert.equal(gz.headers.get("vary"), "Accept-Encoding");
    assert.equal(await gz.text(), "console.log(1);\n".repeat(100)); // fetch decodes it
    const plain = await fetch(srv.url + "/app.js", { headers: { "Accept-Encoding": "identity" } });
    assert.equal(plain.headers.get("content-encoding"), null);
    assert.equal(plain.headers.get("content-type"), "text/javascript; charset=utf-8");
    const refused = await fetch(srv.url + "/app.js", { headers: { "Accept-Encoding": "gzip;q=0" } });
    assert.equal(refused.headers.get("content-encoding"), null);
  });

  it("answers HEAD with the headers only", async () => {
    const r = await fetch(srv.url + "/sub/data.json", { method: "HEAD" });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-length"), "7");
    assert.equal(await r.text(), "");
  });

  it("reloads a file that changed (new ETag, new bytes)", async () => {
    const before = await fetch(srv.url + "/sub/data.json");
    const etag = before.headers.get("etag");
    fs.writeFileSync(path.join(dir, "sub", "data.json"), '{"a":22}');
    const after = await fetch(srv.url + "/sub/data.json", { headers: { "If-None-Match": etag } });
    assert.equal(after.status, 200);
    assert.notEqual(after.headers.get("etag"), etag);
    assert.equal(await after.text(), '{"a":22}');
  });

  it("refuses traversal, hidden files and missing files with 404", async () => {
    for (const p of ["/../../etc/passwd", "/sub/../index.html", "/.secret", "/missing.css", "/sub"]) {
      const status = await new Promise((resolve, reject) => {
        const c = net.connect(srv.port, "127.0.0.1", () =>
          c.write(`GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
        let buf = "";
        c.on("data", (d) => (buf += d));
        c.on("end", () => resolve(Number(buf.split(" ")[1])));
        c.on("error", reject);
      });
      assert.equal(status, 404, p);
    }
  });

  it("refuses POST to a file with 405", async () => {
    const r = await fetch(srv.url + "/index.html", { method: "POST", body: "x" });
    assert.equal(r.status, 405);
    assert.match(r.headers.get("allow"), /GET/);
  });
});
