// A minimal Server-Sent Events client over node:http for the HTTP API suites: it parses
// the event stream as the EventSource specification says (lines; id/event/data/retry
// fields; a blank line dispatches; ":" starts a comment) and records what it parsed.
import http from "node:http";

export class SseStream {
  // Opens GET url with the given headers. Resolves once the response head arrived.
  static open(url, headers = {}) {
    return new Promise((resolve, reject) => {
      const req = http.get(url, { headers: { accept: "text/event-stream", ...headers }, agent: false });
      const timer = setTimeout(() => req.destroy(new Error(`SSE ${url}: no response`)), 10000);
      req.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.on("response", (res) => {
        clearTimeout(timer);
        resolve(new SseStream(req, res));
      });
    });
  }

  constructor(req, res) {
    this.req = req;
    this.res = res;
    this.status = res.statusCode;
    this.headers = res.headers;
    this.events = []; // {event, id, data}
    this.comments = 0;
    this.retry = undefined;
    this.lastEventId = "";
    this.ended = false;
    this.body = ""; // the raw text, for non-200 answers
    this.waiters = new Set();
    this.pending = "";
    this.cur = { data: [], event: "" };
    res.setEncoding("utf8");
    res.on("data", (chunk) => this.feed(chunk));
    res.on("end", () => this.finish());
    res.on("error", () => this.finish());
    res.on("close", () => this.finish());
  }

  finish() {
    this.ended = true;
    this.notify();
  }

  feed(chunk) {
    this.body += this.status === 200 ? "" : chunk;
    this.pending += chunk;
    let nl;
    while ((nl = this.pending.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + (this.pending.startsWith("\r\n", nl) ? 2 : 1));
      this.line(line);
    }
    this.notify();
  }

  line(line) {
    if (line === "") {
      if (this.cur.data.length > 0) {
        this.events.push({ event: this.cur.event || "message", id: this.lastEventId, data: this.cur.data.join("\n") });
      }
      this.cur = { data: [], event: "" };
      return;
    }
    if (line.startsWith(":")) {
      this.comments++;
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.cur.data.push(value);
    else if (field === "event") this.cur.event = value;
    else if (field === "id") this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  // Parsed payloads of one event type.
  of(event) {
    return this.events.filter((e) => e.event === event).map((e) => JSON.parse(e.data));
  }

  messages() {
    return this.of("newMessage");
  }

  notify() {
    for (const w of [...this.waiters]) w();
  }

  until(pred, ms = 5000, what = "SSE events") {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        if (pred(this)) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve(this);
        } else if (this.ended) {
          this.waiters.delete(check);
          clearTimeout(timer);
          reject(new Error(`stream ended while waiting for ${what}; got ${this.events.length} events`));
        }
      };
      timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; got ${this.events.length} events`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  waitMessages(n, ms = 5000) {
    return this.until((s) => s.messages().length >= n, ms, `${n} messages`);
  }

  waitEnd(ms = 5000) {
    return new Promise((resolve, reject) => {
      if (this.ended) return resolve();
      const timer = setTimeout(() => reject(new Error("the stream did not end")), ms);
      const check = () => {
        if (this.ended) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve();
        }
      };
      this.waiters.add(check);
    });
  }

  close() {
    this.req.destroy();
    this.ended = true;
  }
}
