// Connection level: /up, connection_established, ping/pong, malformed input,
// unknown app key — on the wire and through pusher-js.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.js';
import { RawClient, pusherClient, sdkFor, subscribed, channelEvent, closeAllClients, rawRequest } from '../lib/clients.js';

const ESTABLISHED_RE =
  /^\{"event":"pusher:connection_established","data":"\{\\"socket_id\\":\\"(\d+)\.(\d+)\\",\\"activity_timeout\\":30\}"\}$/;

describe('connection', () => {
  let srv;
  before(async () => {
    srv = await startServer({ label: 'connection' });
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  it('GET /up answers 200 {"health":"OK"}', async () => {
    const res = await rawRequest(srv, '/up');
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { health: 'OK' });
    assert.equal(res.body, '{"health":"OK"}');
  });

  it('sends pusher:connection_established with socket_id and activity_timeout 30 (exact bytes)', async () => {
    const c = await RawClient.established(srv);
    const first = c.messages.items[0];
    assert.equal(first.event, 'pusher:connection_established', 'first frame is connection_established');
    assert.match(first.raw, ESTABLISHED_RE);
    const [, a, b] = first.raw.match(ESTABLISHED_RE);
    assert.ok(Number(a) >= 1 && Number(b) >= 1, `socket id parts are positive: ${first.raw}`);
    // two connections get different ids
    const c2 = await RawClient.established(srv);
    assert.notEqual(c2.socketId, c.socketId);
  });

  it('answers pusher:ping with exactly {"event":"pusher:pong"}', async () => {
    const c = await RawClient.established(srv);
    const from = c.mark();
    c.send({ event: 'pusher:ping', data: {} });
    const pong = await c.waitEvent('pusher:pong', { from });
    assert.equal(pong.raw, '{"event":"pusher:pong"}');
  });

  it('answers non-JSON "Hi" with pusher:error 4200 and keeps the connection open', async () => {
    const c = await RawClient.established(srv);
    const from = c.mark();
    c.send('Hi');
    const err = await c.waitError({ from });
    assert.equal(err.data.code, 4200, `error: ${err.raw}`);
    assert.equal(typeof err.data.message, 'string');
    assert.equal(err.channel, undefined, 'errors carry no channel');
    // still served
    const from2 = c.mark();
    c.send({ event: 'pusher:ping', data: {} });
    await c.waitEvent('pusher:pong', { from: from2 });
    assert.ok(c.isOpen);
    assert.equal(c.messages.filter((m) => m.closed).length, 0);
  });

  it('unknown app key: pusher:error 4001 "Application does not exist", then close code 4001', async () => {
    const c = await RawClient.connect(srv, { key: 'no-such-key' });
    const err = await c.waitError();
    assert.equal(err.raw, '{"event":"pusher:error","data":"{\\"code\\":4001,\\"message\\":\\"Application does not exist\\"}"}');
    assert.equal(c.events('pusher:connection_established').length, 0, 'no connection_established');
    const closed = await c.waitClosed();
    assert.equal(closed.code, 4001, `close frame: ${JSON.stringify(closed)}`);
    // the server still serves others
    const ok = await RawClient.established(srv);
    assert.match(ok.socketId, /^\d+\.\d+$/);
  });

  it('pusher-js connects and gets a socket id', async () => {
    const p = await pusherClient(srv);
    assert.equal(p.connection.state, 'connected');
    assert.match(p.connection.socket_id, /^\d+\.\d+$/);
    const ch = await subscribed(p, 'conn-public');
    const sdk = sdkFor(srv);
    await sdk.trigger('conn-public', 'hello', { n: 1 });
    const ev = await channelEvent(ch, 'hello');
    assert.deepEqual(ev.data, { n: 1 });
  });

  it('pusher-js with an unknown key gets error 4001 and stays disconnected (no retry)', async () => {
    const bad = await pusherClient(srv, { app: { ...srv.app, key: 'no-such-key' }, wait: false });
    const err = await bad.errors.waitFor((e) => (e.error?.data?.code ?? e.data?.code) === 4001, {
      what: 'error with code 4001',
    });
    const data = err.error?.data ?? err.data;
    assert.equal(data.message, 'Application does not exist');
    await bad.states.waitFor((s) => s.current === 'disconnected' || s.current === 'failed', {
      what: 'state disconnected',
    });
    // ordering marker: a good client connects and is served after that; the bad one
    // never reached "connected"
    const good = await pusherClient(srv);
    assert.equal(good.connection.state, 'connected');
    assert.equal(bad.states.filter((s) => s.current === 'connected').length, 0);
  });
});
