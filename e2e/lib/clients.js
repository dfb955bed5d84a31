// Clients used by the tests: a raw WebSocket (exact wire), pusher-js, Laravel
// Echo, the pusher server SDK, and a hand-signed HTTP request helper.

import { createRequire } from 'node:module';
import WebSocket from 'ws';
import Echo from 'laravel-echo';
import { Recorder, DEFAULT_WAIT_MS, onceEvent } from './wait.js';

const require = createRequire(import.meta.url);
export const PusherJS = require('pusher-js');
export const PusherSDK = require('pusher');

// 32-byte master key for end-to-end encrypted channels (backend side only).
export const MASTER_KEY_B64 = Buffer.alloc(32, 7).toString('base64');

// ---------------------------------------------------------------- cleanup --

const openClients = new Set();

export function track(closer) {
  openClients.add(closer);
  return closer;
}

// Close every client opened since the last call; call it in afterEach/after.
export async function closeAllClients() {
  const closers = [...openClients];
  openClients.clear();
  await Promise.all(
    closers.map(async (c) => {
      try {
        await c();
      } catch {}
    }),
  );
}

// ------------------------------------------------------------- raw socket --

export function parseFrame(raw) {
  const item = { raw };
  try {
    item.msg = JSON.parse(raw);
  } catch {
    item.msg = null;
    return item;
  }
  if (item.msg && typeof item.msg === 'object') {
    item.event = item.msg.event;
    item.channel = item.msg.channel;
    item.data = item.msg.data;
    if (typeof item.data === 'string') {
      try {
        item.data = JSON.parse(item.data);
      } catch {}
    }
  }
  return item;
}

// A raw WebSocket client that records every frame it receives.
export class RawClient {
  constructor(url, { origin, headers, label } = {}) {
    this.url = url;
    this.label = label || `raw ${url}`;
    this.messages = new Recorder(this.label);
    this.ws = new WebSocket(url, { origin, headers, handshakeTimeout: 5000 });
    this.closeInfo = null;
    this.errors = [];
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => reject(new Error(`upgrade refused: HTTP ${res.statusCode} ${body}`)));
      });
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.messages.push({ closed: true, ...this.closeInfo });
        resolve(this.closeInfo);
      });
    });
    this.ws.on('error', (e) => this.errors.push(e));
    this.ws.on('message', (data) => {
      this.messages.push(parseFrame(data.toString()));
    });
    track(() => this.close());
  }

  static async connect(server, { key = server.app.key, path, ...opts } = {}) {
    const p = path ?? `${server.prefix || ''}/app/${key}?protocol=7&client=js&version=8.4.0&flash=false`;
    const c = new RawClient(`${server.wsBase}${p}`, opts);
    await c.opened;
    return c;
  }

  // Connects and waits for pusher:connection_established; returns the client
  // with .socketId set.
  static async established(server, opts = {}) {
    const c = await RawClient.connect(server, opts);
    await c.waitEstablished();
    return c;
  }

  async waitEstablished(ms = DEFAULT_WAIT_MS) {
    const m = await this.waitEvent('pusher:connection_established', { ms });
    this.socketId = m.data.socket_id;
    this.establishedRaw = m.raw;
    return this.socketId;
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  mark() {
    return this.messages.mark();
  }

  waitEvent(event, { channel, pred = () => true, ms = DEFAULT_WAIT_MS, from = 0 } = {}) {
    return this.messages.waitFor(
      (m) => m.event === event && (channel === undefined || m.channel === channel) && pred(m),
      { ms, from, what: `"${event}"${channel !== undefined ? ` on ${channel}` : ''}` },
    );
  }

  waitError({ from = 0, ms = DEFAULT_WAIT_MS } = {}) {
    return this.waitEvent('pusher:error', { from, ms });
  }

  waitClosed(ms = DEFAULT_WAIT_MS) {
    return this.messages.waitFor((m) => m.closed, { ms, what: 'the socket to close' });
  }

  events(event, from = 0) {
    return this.messages.filter((m) => m.event === event, from);
  }

  subscribe(channel, auth, channelData) {
    const data = { channel };
    if (auth !== undefined) data.auth = auth;
    if (channelData !== undefined) data.channel_data = channelData;
    this.send({ event: 'pusher:subscribe', data });
  }

  // Subscribes (signing with `sdk` for private/presence/cache-private names)
  // and waits for subscription_succeeded; returns that message.
  async subscribeOk(channel, { sdk, presence, ms = DEFAULT_WAIT_MS } = {}) {
    const from = this.mark();
    if (needsAuth(channel)) {
      if (!sdk) throw new Error(`subscribeOk(${channel}) needs an sdk to sign with`);
      const a = sdk.authorizeChannel(this.socketId, channel, isPresence(channel) ? presence : undefined);
      this.subscribe(channel, a.auth, a.channel_data);
    } else {
      this.subscribe(channel);
    }
    return this.waitEvent('pusher_internal:subscription_succeeded', { channel, from, ms });
  }

  close() {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve(this.closeInfo);
    try {
      this.ws.close();
    } catch {}
    // fall back to a hard close if the server does not complete the handshake
    const t = setTimeout(() => {
      try {
        this.ws.terminate();
      } catch {}
    }, 1000);
    return this.closed.finally(() => clearTimeout(t));
  }

  terminate() {
    this.ws.terminate();
    return this.closed;
  }
}

export function needsAuth(channel) {
  return channel.startsWith('private-') || channel.startsWith('presence-');
}
export function isPresence(channel) {
  return channel.startsWith('presence-');
}

// --------------------------------------------------------------- SDK side --

export function sdkFor(server, app = server.app, extra = {}) {
  return new PusherSDK({
    appId: app.app_id,
    key: app.key,
    secret: app.secret,
    host: server.host,
    port: server.port,
    useTLS: false,
    encryptionMasterKeyBase64: MASTER_KEY_B64,
    timeout: 5000,
    ...extra,
  });
}

// SDK calls reject with a RequestError on >= 400; this returns
// { status, body, json } in every case.
export async function sdkCall(promise) {
  try {
    const res = await promise;
    const body = await res.text();
    let json;
    try {
      json = JSON.parse(body);
    } catch {}
    return { status: res.status, body, json };
  } catch (e) {
    if (e && e.status) return { status: e.status, body: e.body, json: undefined, error: e };
    throw e;
  }
}

// A request signed exactly like the Pusher SDKs sign (over `signPath`, default
// the request path without the server prefix), sent with fetch.
export async function signedRequest(
  server,
  { method = 'GET', path, params, body, app = server.app, secret = app.secret, key = app.key, prefix = '', signPath } = {},
) {
  const bodyStr = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const signer = new PusherSDK({ appId: app.app_id, key, secret, host: server.host, port: server.port });
  const qs = signer.createSignedQueryString({ method, path: signPath || path, params, body: bodyStr });
  return rawRequest(server, `${prefix}${path}?${qs}`, { method, body: bodyStr });
}

export async function rawRequest(server, pathAndQuery, { method = 'GET', body, headers = {} } = {}) {
  const res = await fetch(`${server.httpBase}${pathAndQuery}`, {
    method,
    body,
    headers: body !== undefined ? { 'content-type': 'application/json', ...headers } : headers,
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, body: text, json, headers: res.headers };
}

// ---------------------------------------------------------------- pusher-js --

// A channel authorizer that signs locally with the SDK, exactly as Laravel's
// /broadcasting/auth would. `presence` is {user_id, user_info} for presence-*.
export function channelAuthHandler(sdk, presence) {
  return ({ socketId, channelName }, callback) => {
    try {
      callback(null, sdk.authorizeChannel(socketId, channelName, isPresence(channelName) ? presence : undefined));
    } catch (e) {
      callback(e, null);
    }
  };
}

export function userAuthHandler(sdk, userData) {
  return ({ socketId }, callback) => {
    try {
      callback(null, sdk.authenticateUser(socketId, userData));
    } catch (e) {
      callback(e, null);
    }
  };
}

export function pusherOptions(server, extra = {}) {
  return {
    wsHost: server.host,
    wsPort: server.port,
    wssPort: server.port,
    wsPath: server.prefix || undefined,
    forceTLS: false,
    enabledTransports: ['ws'],
    cluster: 'mt1',
    ...extra,
  };
}

// A pusher-js client. Records connection state changes, errors and every
// message; returns once connected (unless wait === false).
export async function pusherClient(
  server,
  { app = server.app, sdk = sdkFor(server, app), presence, user, wait = true, options = {}, label } = {},
) {
  const opts = pusherOptions(server, {
    channelAuthorization: { customHandler: channelAuthHandler(sdk, presence) },
    ...(user ? { userAuthentication: { customHandler: userAuthHandler(sdk, user) } } : {}),
    ...options,
  });
  const pusher = new PusherJS(app.key, opts);
  decorate(pusher, label || `pusher-js(${app.key})`);
  track(() => disconnectPusher(pusher));
  if (wait) await connected(pusher);
  return pusher;
}

function decorate(pusher, label) {
  pusher.states = new Recorder(`${label} states`);
  pusher.errors = new Recorder(`${label} errors`);
  pusher.messages = new Recorder(`${label} messages`);
  pusher.states.push({ current: pusher.connection.state });
  pusher.sockets = [];
  pusher.connection.bind('state_change', (s) => {
    pusher.states.push(s);
    const sock = pusher.connection.connection?.transport?.socket;
    if (s.current === 'connected' && sock && !pusher.sockets.includes(sock)) pusher.sockets.push(sock);
  });
  pusher.connection.bind('error', (e) => pusher.errors.push(e));
  pusher.connection.bind('message', (m) => pusher.messages.push(m));
}

export async function connected(pusher, ms = DEFAULT_WAIT_MS) {
  if (pusher.connection.state !== 'connected') {
    await pusher.states.waitFor((s) => s.current === 'connected', { ms, what: 'state "connected"' });
  }
  return pusher.connection.socket_id;
}

export async function disconnectPusher(pusher) {
  const state = pusher.connection.state;
  if (state !== 'disconnected' && state !== 'failed') pusher.disconnect();
  // pusher-js calls close() again on a socket the server already closed (for
  // 4000-4099 close codes); faye-websocket then arms a 30 s close timer that
  // nothing clears, which would keep the test process alive. Clear it.
  await Promise.all(
    (pusher.sockets || []).map(
      (sock) =>
        new Promise((resolve) => {
          const clear = () => {
            if (sock._closeTimer) clearTimeout(sock._closeTimer);
            resolve();
          };
          if (sock.readyState === 3) return clear();
          sock.addEventListener('close', () =>
            setImmediate(() => {
              clearTimeout(t);
              clear();
            }),
          );
          const t = setTimeout(() => {
            try {
              sock._stream?.destroy();
            } catch {}
            clear();
          }, 1000);
          t.unref();
        }),
    ),
  );
}

// Subscribes and records every event on the channel (bind_global), waiting
// for pusher:subscription_succeeded unless wait === false.
export async function subscribed(pusher, name, { wait = true, ms = DEFAULT_WAIT_MS } = {}) {
  const channel = pusher.subscribe(name);
  if (!channel.recorder) {
    channel.recorder = new Recorder(`pusher-js channel ${name}`);
    channel.bind_global((event, data, metadata) => channel.recorder.push({ event, data, metadata }));
  }
  if (wait) await channelEvent(channel, 'pusher:subscription_succeeded', { ms });
  return channel;
}

export function channelEvent(channel, event, { ms = DEFAULT_WAIT_MS, from = 0, pred = () => true } = {}) {
  return channel.recorder.waitFor((e) => e.event === event && pred(e), { ms, from, what: `"${event}"` });
}

// -------------------------------------------------------------------- Echo --

// A Laravel Echo instance on pusher-js; `authorizer` signs with the SDK as the
// Laravel backend's /broadcasting/auth would.
export async function echoClient(
  server,
  { app = server.app, sdk = sdkFor(server, app), presence, broadcaster = 'reverb', wait = true, extra = {} } = {},
) {
  const echo = new Echo({
    broadcaster,
    key: app.key,
    wsHost: server.host,
    wsPort: server.port,
    wssPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    ...(broadcaster === 'pusher' ? { cluster: 'mt1' } : {}),
    Pusher: PusherJS,
    authorizer: (channel) => ({
      authorize: (socketId, callback) => {
        try {
          callback(null, sdk.authorizeChannel(socketId, channel.name, isPresence(channel.name) ? presence : undefined));
        } catch (e) {
          callback(e, null);
        }
      },
    }),
    ...extra,
  });
  const pusher = echo.connector.pusher;
  decorate(pusher, `echo(${app.key})`);
  track(() => disconnectPusher(pusher));
  if (wait) await connected(pusher);
  return echo;
}

export function echoSubscribed(echoChannel, ms = DEFAULT_WAIT_MS) {
  const sub = echoChannel.subscription;
  if (sub.subscribed) return Promise.resolve();
  return onceEvent(sub, 'pusher:subscription_succeeded', { ms, what: `subscription to ${sub.name}` });
}

export { WebSocket };
