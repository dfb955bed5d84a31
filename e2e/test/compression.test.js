// The compression app setting: permessage-deflate (no context takeover) for
// clients that offer it. A `ws` client offering the extension negotiates it
// (Sec-WebSocket-Extensions in the 101 answer, ws.extensions), receives a
// large broadcast compressed (counted in bytes on the TCP socket; ws inflates
// it transparently) with the exact content, and may send compressed frames.
// Clients that do not offer it, and apps without the setting, get plain
// frames with the same content.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEFAULT_APP } from '../lib/server.js';
import { RawClient, WebSocket, sdkFor, sdkCall, closeAllClients, track, parseFrame } from '../lib/clients.js';
import { Recorder } from '../lib/wait.js';

const DEFLATING = { ...DEFAULT_APP, compression: true };
const PLAIN = { app_id: 'plain-app', key: 'plain-key', secret: 'plain-secret' };

// 2 KB+ of text that deflates well.
const BIG = { text: 'the quick brown fox jumps over the lazy dog. '.repeat(50), n: 1 };

// A ws client that records frames, the 101 answer's headers and the bytes
// read from the TCP socket. perMessageDeflate: false offers nothing; an
// object is ws's offer (true = ws's default offer).
async function client(server, app, { perMessageDeflate = true, label } = {}) {
  const url = `${server.wsBase}/app/${app.key}?protocol=7&client=js&version=8.4.0&flash=false`;
  const ws = new WebSocket(url, { perMessageDeflate, handshakeTimeout: 5000 });
  const c = { ws, messages: new Recorder(label || `ws ${app.key}`), bytes: 0, upgradeHeaders: null };
  ws.on('upgrade', (res) => {
    c.upgradeHeaders = res.headers;
  });
  ws.on('message', (data) => c.messages.push(parseFrame(data.toString())));
  track(
    () =>
      new Promise((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once('close', resolve);
        ws.terminate();
      }),
  );
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws._socket.on('data', (chunk) => {
    c.bytes += chunk.length;
  });
  const est = await c.messages.waitFor((m) => m.event === 'pusher:connection_established', {
    what: 'connection_established',
  });
  c.socketId = est.data.socket_id;
  c.subscribe = async (channel) => {
    const from = c.messages.mark();
    ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
    await c.messages.waitFor((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === channel, {
      from,
      what: `subscription_succeeded on ${channel}`,
    });
  };
  return c;
}

describe('compression (permessage-deflate)', () => {
  let srv;
  let sdk;
  let sdkPlain;
  before(async () => {
    srv = await startServer({ label: 'compression', config: { apps: [DEFLATING, PLAIN] } });
    sdk = sdkFor(srv);
    sdkPlain = sdkFor(srv, PLAIN);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  it('a client offering permessage-deflate negotiates it and gets a 2 KB broadcast compressed, with the exact content', async () => {
    const c = await client(srv, DEFLATING, { label: 'deflate' });
    const ext = c.upgradeHeaders['sec-websocket-extensions'];
    assert.match(ext || '', /^permessage-deflate\b/, `Sec-WebSocket-Extensions: ${ext}`);
    assert.match(ext, /server_no_context_takeover/, `no context takeover: ${ext}`);
    assert.match(c.ws.extensions, /permessage-deflate/, `ws.extensions: ${c.ws.extensions}`);
    await c.subscribe('big-1');
    const before = c.bytes;
    const res = await sdkCall(sdk.trigger('big-1', 'big', BIG));
    assert.equal(res.status, 200, res.body);
    const m = await c.messages.waitFor((x) => x.event === 'big', { what: 'the big event' });
    assert.deepEqual(m.data, BIG);
    const plainSize = Buffer.byteLength(m.raw);
    const wire = c.bytes - before;
    assert.ok(plainSize > 2000, `payload ${plainSize} bytes`);
    assert.ok(wire < plainSize / 2, `${wire} bytes on the wire for a ${plainSize}-byte message: not compressed`);
    process.stdout.write(`# ${plainSize}-byte message took ${wire} bytes on the wire; extension: ${ext}\n`);
  });

  it('several broadcasts in a row each inflate on their own (no context takeover) and keep their order', async () => {
    const c = await client(srv, DEFLATING);
    assert.match(c.ws.extensions, /permessage-deflate/, `negotiated: ${c.ws.extensions}`);
    await c.subscribe('big-2');
    for (let i = 0; i < 5; i++) {
      const r = await sdkCall(sdk.trigger('big-2', 'big', { ...BIG, n: i }));
      assert.equal(r.status, 200, r.body);
    }
    const got = [];
    for (let i = 0; i < 5; i++) {
      got.push(await c.messages.waitFor((x) => x.event === 'big' && x.data.n === i, { what: `big #${i}` }));
    }
    assert.deepEqual(
      c.messages.filter((x) => x.event === 'big').map((x) => x.data.n),
      [0, 1, 2, 3, 4],
    );
    for (const m of got) assert.equal(m.data.text, BIG.text);
  });

  it('subscribers with and without the extension on one channel get the same content', async () => {
    const d = await client(srv, DEFLATING, { label: 'deflate' });
    const p = await client(srv, DEFLATING, { perMessageDeflate: false, label: 'plain' });
    assert.equal(p.upgradeHeaders['sec-websocket-extensions'], undefined, 'nothing offered, nothing negotiated');
    assert.equal(p.ws.extensions, '');
    await d.subscribe('big-3');
    await p.subscribe('big-3');
    const pb = p.bytes;
    const db = d.bytes;
    await sdk.trigger('big-3', 'big', BIG);
    const md = await d.messages.waitFor((x) => x.event === 'big', { what: 'big on deflate' });
    const mp = await p.messages.waitFor((x) => x.event === 'big', { what: 'big on plain' });
    assert.equal(md.raw, mp.raw, 'same bytes once inflated');
    assert.ok(p.bytes - pb >= Buffer.byteLength(mp.raw), `plain client got ${p.bytes - pb} bytes`);
    assert.ok(d.bytes - db < Buffer.byteLength(md.raw) / 2, `deflate client got ${d.bytes - db} bytes`);
  });

  it('compressed frames from the client are inflated (subscribe and client event sent compressed)', async () => {
    // threshold 0: ws compresses every message it sends
    const a = await client(srv, DEFLATING, { perMessageDeflate: { threshold: 0 }, label: 'a' });
    const b = await client(srv, DEFLATING, { perMessageDeflate: { threshold: 0 }, label: 'b' });
    for (const c of [a, b]) assert.match(c.ws.extensions, /permessage-deflate/, `negotiated: ${c.ws.extensions}`);
    const ch = 'private-deflate-4';
    for (const c of [a, b]) {
      const from = c.messages.mark();
      const auth = sdk.authorizeChannel(c.socketId, ch);
      c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: ch, auth: auth.auth } }));
      await c.messages.waitFor((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === ch, {
        from,
        what: 'subscription_succeeded',
      });
    }
    a.ws.send(JSON.stringify({ event: 'client-big', channel: ch, data: { text: BIG.text.slice(0, 1500) } }));
    const m = await b.messages.waitFor((x) => x.event === 'client-big', { what: 'client-big on b' });
    assert.deepEqual(m.data, { text: BIG.text.slice(0, 1500) });
    // ping/pong through compressed frames
    a.ws.send(JSON.stringify({ event: 'pusher:ping', data: {} }));
    await a.messages.waitFor((x) => x.event === 'pusher:pong', { what: 'pusher:pong' });
  });

  it('an app without compression negotiates nothing and still serves a client that offers it', async () => {
    const c = await client(srv, PLAIN);
    assert.equal(c.upgradeHeaders['sec-websocket-extensions'], undefined);
    assert.equal(c.ws.extensions, '');
    await c.subscribe('big-5');
    const before = c.bytes;
    await sdkPlain.trigger('big-5', 'big', BIG);
    const m = await c.messages.waitFor((x) => x.event === 'big', { what: 'big' });
    assert.deepEqual(m.data, BIG);
    assert.ok(c.bytes - before >= Buffer.byteLength(m.raw));
  });

  it('the default RawClient (ws offers permessage-deflate) still works against the compressing app', async () => {
    const r = await RawClient.established(srv);
    await r.subscribeOk('small-6');
    await sdk.trigger('small-6', 'small', { ok: true });
    const m = await r.waitEvent('small', { channel: 'small-6' });
    assert.deepEqual(m.data, { ok: true });
  });
});
