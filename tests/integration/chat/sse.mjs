// Server-Sent Events for the HTTP API suites: SseParser (the event-stream format) and
// SseStream, a client over node:http that records what it parsed.
import http from "node:http";
import { Checks } from "../lib/wait.mjs";

// An incremental text/event-stream parser, as the WHATWG specification says: lines end
// with CRLF, LF or CR; `:` starts a comment; `field: value` drops one leading space; a
// blank line dispatches; an event cut off by the end of the stream is discarded.
export class SseParser {
  constructor(onEvent, onComment = () => {}) {
    this.onEvent = onEvent; // ({type, data, id, lastEventId, hasId})
    this.onComment = onComment;
    this.rest = ""; // an unterminated line
    this.sawCR = false; // the previous chunk ended with CR: a following LF is part of it
    this.first = true;
    this.reset();
    this.idBuffer = ""; // the last event id buffer (kept from event to event)
    this.lastEventId = ""; // the last event id string, as of the last dispatch
    this.retry = undefined;
  }

  reset() {
    this.type = "";
    this.data = [];
    this.idField = undefined; // the id field of the event being built, if any
  }

  push(text) {
    if (this.first && text.length) {
      this.first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.sawCR && text[0] === "\n") text = text.slice(1);
    this.sawCR = false;
    let buf = this.rest + text;
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      const ch = buf[i];
      if (ch !== "\n" && ch !== "\r") continue;
      this.line(buf.slice(start, i));
      if (ch === "\r") {
        if (i + 1 < buf.length) {
          if (buf[i + 1] === "\n") i++;
        } else {
          this.sawCR = true;
        }
      }
      start = i + 1;
    }
    this.rest = buf.slice(start);
  }

  line(l) {
    if (l === "") {
      this.dispatch();
      return;
    }
    if (l[0] === ":") {
      this.onComment(l.slice(1));
      return;
    }
    const c = l.indexOf(":");
    const field = c < 0 ? l : l.slice(0, c);
    let value = c < 0 ? "" : l.slice(c + 1);
    if (value[0] === " ") value = value.slice(1);
    switch (field) {
      case "event":
        this.type = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) {
          this.idField = value;
          this.idBuffer = value;
        }
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break; // ignored, as the spec says
    }
  }

  // The last event id is taken at dispatch: an event cut off by the end of the stream
  // leaves it as it was.
  dispatch() {
    this.lastEventId = this.idBuffer;
    if (this.data.length === 0) {
      this.reset();
      return;
    }
    const ev = {
      type: this.type || "message",
      data: this.data.join("\n"),
      id: this.idField,
      hasId: this.idField !== undefined,
      lastEventId: this.lastEventId,
    };
    this.reset();
    this.onEvent(ev);
  }
}


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
    this.events = []; // {event, id, data}; id: the last event id as of the event
    this.comments = 0;
    this.ended = false;
    this.body = ""; // the raw text, for non-200 answers
    this.checks = new Checks();
    this.parser = new SseParser(
      (ev) => this.events.push({ event: ev.type, id: ev.lastEventId, data: ev.data }),
      () => this.comments++,
    );
    res.setEncoding("utf8");
    res.on("data", (chunk) => {
      if (this.status !== 200) this.body += chunk;
      this.parser.push(chunk);
      this.checks.notify();
    });
    res.on("end", () => this.finish());
    res.on("error", () => this.finish());
    res.on("close", () => this.finish());
  }

  get retry() {
    return this.parser.retry;
  }

  get lastEventId() {
    return this.parser.lastEventId;
  }

  finish() {
    this.ended = true;
    this.checks.notify();
  }

  // Parsed payloads of one event type.
  of(event) {
    return this.events.filter((e) => e.event === event).map((e) => JSON.parse(e.data));
  }

  messages() {
    return this.of("newMessage");
  }

  until(pred, ms = 5000, what = "SSE events") {
    return this.checks.wait(
      () => {
        if (pred(this)) return this;
        if (this.ended) throw new Error(`stream ended while waiting for ${what}; got ${this.events.length} events`);
        return undefined;
      },
      ms,
      () => `timed out after ${ms} ms waiting for ${what}; got ${this.events.length} events`,
    );
  }

  waitMessages(n, ms = 5000) {
    return this.until((s) => s.messages().length >= n, ms, `${n} messages`);
  }

  async waitEnd(ms = 5000) {
    await this.checks.wait(() => (this.ended ? true : undefined), ms, "the stream did not end");
  }

  close() {
    this.req.destroy();
    this.ended = true;
  }
}
