// Waiting helpers. Every wait is for a concrete event (or a concrete HTTP-visible
// condition, polled) with a deadline; nothing sleeps "to let things settle".

export const DEFAULT_WAIT_MS = Number(process.env.E2E_WAIT_MS || 3000);

// Log tails of running servers, appended to timeout errors so a failure shows
// what the server printed. Filled by server.js.
export const serverLogSources = new Set();

function serverLogsTail() {
  const parts = [];
  for (const src of serverLogSources) {
    const tail = src.logs().slice(-2000);
    if (tail.trim()) parts.push(`--- server ${src.label} (last 2000 chars of stdout/stderr) ---\n${tail}`);
  }
  return parts.length ? `\n${parts.join('\n')}` : '';
}

function short(item) {
  let s;
  try {
    // raw socket frames: show the bytes as received
    if (item && typeof item === 'object' && typeof item.raw === 'string') return short(item.raw);
    s = typeof item === 'string' ? item : JSON.stringify(item);
  } catch {
    s = String(item);
  }
  return s && s.length > 400 ? `${s.slice(0, 400)}…` : s;
}

// Recorder: an ordered log of everything that arrived on one source (a socket,
// a pusher-js channel, a connection), with waiters that resolve on a match.
export class Recorder {
  constructor(label) {
    this.label = label;
    this.items = [];
    this.waiters = new Set();
  }

  push(item) {
    this.items.push(item);
    const index = this.items.length - 1;
    for (const w of [...this.waiters]) {
      if (index >= w.from && w.pred(item)) w.done(item);
    }
  }

  // Position to pass as `from` so that only later items match.
  mark() {
    return this.items.length;
  }

  filter(pred, from = 0) {
    return this.items.slice(from).filter(pred);
  }

  indexOf(pred, from = 0) {
    for (let i = from; i < this.items.length; i++) if (pred(this.items[i])) return i;
    return -1;
  }

  dump(from = 0) {
    const lines = this.items.slice(from).map((it, i) => `  [${from + i}] ${short(it)}`);
    return lines.length ? lines.join('\n') : '  (nothing)';
  }

  // Resolves with the first item (at index >= from) for which pred is true.
  waitFor(pred, { ms = DEFAULT_WAIT_MS, what = 'a matching item', from = 0 } = {}) {
    const i = this.indexOf(pred, from);
    if (i !== -1) return Promise.resolve(this.items[i]);
    return new Promise((resolve, reject) => {
      const w = {
        from,
        pred,
        done: (item) => {
          clearTimeout(w.timer);
          this.waiters.delete(w);
          resolve(item);
        },
      };
      w.timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(
          new Error(
            `timed out after ${ms} ms waiting for ${what} on ${this.label}; received so far:\n${this.dump()}${serverLogsTail()}`,
          ),
        );
      }, ms);
      this.waiters.add(w);
    });
  }
}

// Resolves with the first n matching items (index >= from) of a Recorder.
export async function waitForCount(recorder, pred, n, opts = {}) {
  const { ms = DEFAULT_WAIT_MS, what = 'matching items', from = 0 } = opts;
  const deadline = Date.now() + ms;
  for (;;) {
    const got = recorder.filter(pred, from);
    if (got.length >= n) return got.slice(0, n);
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new Error(
        `timed out after ${ms} ms waiting for ${n} x ${what} on ${recorder.label} (got ${got.length}); received so far:\n${recorder.dump()}${serverLogsTail()}`,
      );
    }
    // wait for the next matching item (or the deadline)
    await recorder.waitFor(pred, { ms: left, what, from: recorder.mark() }).catch(() => {});
  }
}

// Wait for an EventEmitter-style event (node EventEmitter or pusher-js Dispatcher).
export function onceEvent(emitter, event, { ms = DEFAULT_WAIT_MS, filter = () => true, what } = {}) {
  return new Promise((resolve, reject) => {
    const bind = emitter.on ? emitter.on.bind(emitter) : emitter.bind.bind(emitter);
    const unbind = emitter.off
      ? emitter.off.bind(emitter)
      : emitter.removeListener
        ? emitter.removeListener.bind(emitter)
        : emitter.unbind.bind(emitter);
    const handler = (...args) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      unbind(event, handler);
      resolve(args.length > 1 ? args : args[0]);
    };
    const timer = setTimeout(() => {
      unbind(event, handler);
      reject(new Error(`timed out after ${ms} ms waiting for event "${event}"${what ? ` (${what})` : ''}${serverLogsTail()}`));
    }, ms);
    bind(event, handler);
  });
}

// Poll an async condition until it returns a truthy value (returned), or fail
// with the last observed value. Only for state that is visible solely by
// asking (HTTP API counts).
export async function waitUntil(fn, { ms = DEFAULT_WAIT_MS, interval = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + ms;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}; last value: ${short(last)}${lastErr ? `; last error: ${lastErr.message}` : ''}${serverLogsTail()}`,
      );
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

// Wraps a promise with a deadline.
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}${serverLogsTail()}`)), ms);
    }),
  ]);
}
