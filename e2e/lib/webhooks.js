// A webhook receiver for the end-to-end tests: a node HTTP server on a free
// loopback port that checks every request the way a Laravel app does (the
// official `pusher` SDK's webhook().isValid(): X-Pusher-Key is the app key
// and X-Pusher-Signature the HMAC-SHA256 of the raw body with the app
// secret), and records the requests and the events they carry.
//
//   const rx = await startReceiver({ app, headers: { 'x-tenant': 'a' } });
//   rx.url                      http://127.0.0.1:PORT/hook
//   await rx.waitEvent('channel_occupied', 'private-a')
//   rx.count('channel_vacated', 'private-a')
//   rx.assertAllValid()         every request was a valid, signed POST
//   await rx.close()
//
// `status(n, req)` chooses each answer's HTTP status (n counts requests from
// 1); the default is 200. Events of requests answered outside 2xx are
// recorded as requests only, not as events: the server has to send them again.

import crypto from 'node:crypto';
import http from 'node:http';
import { PusherSDK } from './clients.js';
import { Recorder, DEFAULT_WAIT_MS, waitForCount } from './wait.js';
import { HOST, DEFAULT_APP } from './server.js';

export async function startReceiver({ app = DEFAULT_APP, headers = {}, status = () => 200, label = 'webhooks' } = {}) {
  const sdk = new PusherSDK({ appId: app.app_id, key: app.key, secret: app.secret });
  const requests = new Recorder(`${label} requests`);
  const events = new Recorder(`${label} events`);
  let n = 0;

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      n += 1;
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const problems = [];
      if (req.method !== 'POST') problems.push(`method ${req.method}, expected POST`);
      if (req.url !== '/hook') problems.push(`path ${req.url}, expected /hook`);
      if (req.headers['content-type'] !== 'application/json') {
        problems.push(`Content-Type ${JSON.stringify(req.headers['content-type'])}, expected "application/json"`);
      }
      let valid = false;
      try {
        valid = sdk.webhook({ headers: req.headers, rawBody }).isValid();
      } catch (e) {
        problems.push(`SDK webhook() threw ${e.message}`);
      }
      if (!valid) {
        problems.push(
          `pusher SDK webhook().isValid() is false (x-pusher-key ${JSON.stringify(req.headers['x-pusher-key'])}, ` +
            `x-pusher-signature ${JSON.stringify(req.headers['x-pusher-signature'])})`,
        );
      }
      for (const [k, v] of Object.entries(headers)) {
        if (req.headers[k.toLowerCase()] !== v) {
          problems.push(`header ${k}: ${JSON.stringify(req.headers[k.toLowerCase()])}, expected ${JSON.stringify(v)}`);
        }
      }
      let body = null;
      try {
        body = JSON.parse(rawBody);
      } catch {
        problems.push('body is not JSON');
      }
      if (body) {
        if (!Number.isInteger(body.time_ms)) problems.push(`time_ms ${JSON.stringify(body.time_ms)} is not an integer`);
        else if (Math.abs(body.time_ms - Date.now()) > 60_000) problems.push(`time_ms ${body.time_ms} is far from now`);
        if (!Array.isArray(body.events) || body.events.length === 0) problems.push('events is not a non-empty array');
      }
      let code = 200;
      try {
        code = status(n, req) ?? 200;
      } catch {}
      const record = { n, headers: req.headers, rawBody, body, problems, status: code, at: Date.now() };
      requests.push(record);
      res.writeHead(code, { 'content-type': 'text/plain' });
      res.end(code >= 200 && code < 300 ? 'ok' : 'try again');
      if (code >= 200 && code < 300 && body && Array.isArray(body.events)) {
        for (const ev of body.events) events.push({ ...ev, _request: n, _at: record.at });
      }
    });
  });
  // the server keeps connections alive between webhooks; do not let that
  // hold close() up
  server.keepAliveTimeout = 1000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });
  const { port } = server.address();

  const match = (name, channel, pred = () => true) => (e) =>
    e.name === name && (channel === undefined || e.channel === channel) && pred(e);

  const rx = {
    label,
    port,
    url: `http://${HOST}:${port}/hook`,
    requests,
    events,
    // Resolves with the first accepted event of that name (and channel).
    waitEvent(name, channel, { pred, ms = DEFAULT_WAIT_MS, from = 0 } = {}) {
      return events.waitFor(match(name, channel, pred), {
        ms,
        from,
        what: `webhook ${name}${channel !== undefined ? ` for ${channel}` : ''}`,
      });
    },
    waitEvents(name, channel, count, { pred, ms = DEFAULT_WAIT_MS, from = 0 } = {}) {
      return waitForCount(events, match(name, channel, pred), count, {
        ms,
        from,
        what: `webhook ${name}${channel !== undefined ? ` for ${channel}` : ''}`,
      });
    },
    // Accepted events of that name (and channel) so far.
    list(name, channel, pred) {
      return events.filter(match(name, channel, pred));
    },
    count(name, channel, pred) {
      return events.filter(match(name, channel, pred)).length;
    },
    // Every request so far was a POST to /hook with Content-Type
    // application/json, a valid key and signature, the extra headers, and
    // a body {time_ms, events: [...]}.
    assertAllValid() {
      const bad = requests.items.filter((r) => r.problems.length);
      if (bad.length) {
        throw new Error(
          `${bad.length} of ${requests.items.length} webhook requests to ${label} were invalid:\n` +
            bad
              .slice(0, 5)
              .map((r) => `  request ${r.n}: ${r.problems.join('; ')}\n    body ${r.rawBody.slice(0, 300)}`)
              .join('\n'),
        );
      }
    },
    // The accepted events so far; with `part`, only those whose channel
    // contains it.
    dump(part) {
      if (part === undefined) return events.dump();
      const lines = events.items
        .map((e, i) => [i, e])
        .filter(([, e]) => typeof e.channel === 'string' && e.channel.includes(part))
        .map(([i, e]) => `  [${i}] ${JSON.stringify(e)}`);
      return lines.length ? lines.join('\n') : `  (nothing for *${part}*)`;
    },
    close() {
      server.closeAllConnections?.();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  return rx;
}

// The hex HMAC-SHA256 of a raw body with the app secret, as the server
// signs a webhook: used to check the receiver itself with a hand-made request.
export function signBody(secret, raw) {
  return crypto.createHmac('sha256', secret).update(raw).digest('hex');
}
