// Bounded waiting, for every integration suite: no wait in a test may hang forever.
//
//   sleep(ms)                          a plain delay
//   waitUntil(fn, {timeoutMs, ...})    polls fn until it returns something truthy
//   pollUntil(get, pred, {...})        polls get() until pred(value); the error shows the last value
//   withTimeout(promise, ms, what)     races a promise against a deadline
//   once(emitter, event, ms)           the arguments of the next event, bounded
//   Checks                             conditions re-checked on each event an owner reports
//   pool(n, concurrency, fn)           runs fn(0..n-1) with a bounded number in flight
//
// Errors always say what was being waited for; none of these retries an operation itself.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn until it returns a truthy value or the time runs out.
export async function waitUntil(fn, { timeoutMs = 10000, intervalMs = 20, what = "condition" } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// Polls get() until pred(value) holds and returns that value. On failure the error names the
// last value seen, as show(value) renders it after `label` (e.g. "last /stats").
export async function pollUntil(get, pred, { timeoutMs = 10000, intervalMs = 20, what = "condition", label = "last value", show = JSON.stringify } = {}) {
  let last;
  try {
    await waitUntil(
      async () => {
        last = await get();
        return pred(last);
      },
      { timeoutMs, intervalMs, what },
    );
  } catch (e) {
    throw new Error(`${e.message}; ${label}: ${show(last)}`);
  }
  return last;
}

// A bounded wait on a promise: rejects with `what` (a string, or a function giving one) if it
// does not settle within ms.
export function withTimeout(promise, ms, what = "operation") {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`));
    }, ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// Resolves with the arguments of the next `event` on emitter (bounded).
export function once(emitter, event, ms = 5000) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => resolve(args);
    emitter.once(event, handler);
  });
  return withTimeout(p, ms, `event "${event}"`).catch((e) => {
    emitter.off(event, handler);
    throw e;
  });
}

// Conditions that events make true. The owner (a connection, a recorder, a stream...) calls
// notify() whenever something happened (data, close...); wait(test) re-runs test then.
export class Checks {
  constructor() {
    this.pending = new Set();
  }

  notify() {
    for (const c of [...this.pending]) c();
  }

  // Resolves with test()'s first result other than undefined (test runs at once and on every
  // notify()); rejects with what test() throws, or after ms with an Error whose message is
  // `message` (a string, or a function giving one at that moment).
  wait(test, ms, message) {
    return new Promise((resolve, reject) => {
      let timer;
      const done = () => {
        clearTimeout(timer);
        this.pending.delete(check);
      };
      const check = () => {
        let v;
        try {
          v = test();
        } catch (e) {
          done();
          reject(e);
          return;
        }
        if (v !== undefined) {
          done();
          resolve(v);
        }
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(typeof message === "function" ? message() : message));
      }, ms);
      this.pending.add(check);
      check();
    });
  }
}

// Runs fn(i) for i in [0, n) with at most `concurrency` in flight. With rampMs, worker w starts
// w * rampMs later, so that the first wave is spread out too.
export async function pool(n, concurrency, fn, { rampMs = 0 } = {}) {
  let next = 0;
  const workers = [];
  for (let w = 0; w < Math.min(concurrency, n); w++) {
    workers.push(
      (async () => {
        if (rampMs) await sleep(w * rampMs);
        for (;;) {
          const i = next++;
          if (i >= n) return;
          await fn(i);
        }
      })(),
    );
  }
  await Promise.all(workers);
}
