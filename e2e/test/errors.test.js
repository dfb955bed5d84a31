// WebSocket error paths: bad channel auth, allowed_origins, max_connections,
// max_message_size, rate limiting (with and without terminate_on_limit).
// After each error the server must still serve another client.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.js';
import {
  RawClient,
  pusherClient,
  echoClient,
  sdkFor,
  sdkCall,
  subscribed,
  channelEvent,
  closeAllClients,
  PusherSDK,
} from '../lib/clients.js';
import { Recorder, waitUntil } from '../lib/wait.js';

const MAIN = { app_id: '1001', key: 'main-key', secret: 'main-secret' };
const ORIGIN = { app_id: '1002', key: 'origin-key', secret: 'origin-secret', allowed_origins: ['laravel.com', '*.example.com'] };
const QUOTA = { app_id: '1003', key: 'quota-key', secret: 'quota-secret', max_connections: 1 };
const SMALL = { app_id: '1004', key: 'small-key', secret: 'small-secret', max_message_size: 256 };
const RL = {
  app_id: '1005',
  key: 'rl-key',
  secret: 'rl-secret',
  rate_limiting: { enabled: true, max_attempts: 3, decay_seconds: 60, terminate_on_limit: false },
};
const RLTERM = {
  app_id: '1006',
  key: 'rlterm-key',
  secret: 'rlterm-secret',
  rate_limiting: { enabled: true, max_attempts: 1, decay_seconds: 60, terminate_on_limit: true },
};

describe('websocket error paths', () => {
  let srv;
  let sdk;
  let mainSub;

  // The server still serves a healthy client of the main app.
  async function stillServed(tag) {
    const from = mainSub.mark();
    await sdk.trigger('health', 'alive', { tag });
    const m = await mainSub.waitEvent('alive', { from });
    assert.deepEqual(m.data, { tag });
  }

  before(async () => {
    srv = await startServer({
      label: 'errors',
      config: { apps: [MAIN, ORIGIN, QUOTA, SMALL, RL, RLTERM] },
    });
    sdk = sdkFor(srv, MAIN);
  });
  afterEach(async () => {
    await closeAllClients();
    mainSub = null;
  });
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  const healthy = async () => {
    mainSub = await RawClient.established(srv, { key: MAIN.key });
    await mainSub.subscribeOk('health');
  };

  it('bad private-channel auth: pusher:error 4009 "Connection is unauthorized"', async () => {
    await healthy();
    const c = await RawClient.established(srv, { key: MAIN.key });
    c.subscribe('private-vault', `${MAIN.key}:${'ab'.repeat(32)}`);
    const err = await c.waitError();
    assert.equal(err.raw, '{"event":"pusher:error","data":"{\\"code\\":4009,\\"message\\":\\"Connection is unauthorized\\"}"}');
    // pusher-js expects pusher:subscription_error on the channel as well
    const subErr = await c.waitEvent('pusher:subscription_error', { channel: 'private-vault' });
    process.stdout.write(`# observed subscription_error: ${subErr.raw}\n`);
    assert.equal(c.events('pusher_internal:subscription_succeeded').length, 0);
    assert.ok(c.isOpen, 'the connection stays open');
    // the bad subscriber is not subscribed: a trigger does not reach it
    await sdk.trigger(['private-vault', 'health'], 'after-bad-auth', {});
    await mainSub.waitEvent('after-bad-auth');
    assert.equal(c.events('after-bad-auth').length, 0);
    await stillServed('bad-auth');
  });

  it('bad auth on presence and private-cache channels and a missing auth also give 4009', async () => {
    await healthy();
    const c = await RawClient.established(srv, { key: MAIN.key });
    const wrong = new PusherSDK({ appId: MAIN.app_id, key: MAIN.key, secret: 'not-the-secret' });
    for (const ch of ['presence-vault', 'private-cache-vault']) {
      const from = c.mark();
      const a = wrong.authorizeChannel(c.socketId, ch, ch.startsWith('presence-') ? { user_id: '1' } : undefined);
      c.subscribe(ch, a.auth, a.channel_data);
      const err = await c.waitError({ from });
      assert.deepEqual(err.data, { code: 4009, message: 'Connection is unauthorized' }, `${ch}: ${err.raw}`);
    }
    const from = c.mark();
    c.subscribe('private-noauth');
    const err = await c.waitError({ from });
    assert.deepEqual(err.data, { code: 4009, message: 'Connection is unauthorized' }, err.raw);
    await stillServed('bad-auth-2');
  });

  it('pusher-js and Echo see pusher:subscription_error for a wrongly signed channel', async () => {
    await healthy();
    const wrongSdk = new PusherSDK({ appId: MAIN.app_id, key: MAIN.key, secret: 'not-the-secret' });
    const p = await pusherClient(srv, { app: MAIN, sdk: wrongSdk });
    const ch = await subscribed(p, 'private-denied', { wait: false });
    const subErr = await channelEvent(ch, 'pusher:subscription_error');
    assert.ok(subErr.data !== undefined);
    const connErr = await p.errors.waitFor((e) => e.data?.code === 4009, { what: 'connection error 4009' });
    assert.equal(connErr.data.message, 'Connection is unauthorized');
    assert.equal(p.connection.state, 'connected');

    const echoErrors = new Recorder('echo .error()');
    const echo = await echoClient(srv, { app: MAIN, sdk: wrongSdk });
    echo.private('denied-echo').error((e) => echoErrors.push(e));
    const e = await echoErrors.waitFor(() => true, { what: 'Echo .error() callback' });
    process.stdout.write(`# observed Echo .error() payload: ${JSON.stringify(e)}\n`);
    await stillServed('bad-auth-pjs');
  });

  it('allowed_origins mismatch: 4009 "Origin not allowed" and close; matching origins connect', async () => {
    await healthy();
    const bad = await RawClient.connect(srv, { key: ORIGIN.key, origin: 'http://evil.test' });
    const err = await bad.waitError();
    assert.equal(err.raw, '{"event":"pusher:error","data":"{\\"code\\":4009,\\"message\\":\\"Origin not allowed\\"}"}');
    assert.equal(bad.events('pusher:connection_established').length, 0);
    const closed = await bad.waitClosed();
    process.stdout.write(`# observed origin close: ${JSON.stringify(closed)}\n`);

    const sub = await RawClient.connect(srv, { key: ORIGIN.key, origin: 'http://sub.laravel.com' });
    const err2 = await sub.waitError();
    assert.deepEqual(err2.data, { code: 4009, message: 'Origin not allowed' }, 'sub.laravel.com is not laravel.com');

    const noOrigin = await RawClient.connect(srv, { key: ORIGIN.key });
    const err3 = await noOrigin.waitError();
    assert.deepEqual(err3.data, { code: 4009, message: 'Origin not allowed' }, 'a missing Origin is rejected');

    for (const origin of ['http://laravel.com', 'https://laravel.com:8443', 'http://app.example.com']) {
      const ok = await RawClient.connect(srv, { key: ORIGIN.key, origin });
      const sid = await ok.waitEstablished();
      assert.match(sid, /^\d+\.\d+$/, origin);
    }
    await stillServed('origin');
  });

  it('max_connections reached: 4004 "Application is over connection quota" and close', async () => {
    await healthy();
    const first = await RawClient.established(srv, { key: QUOTA.key });
    await first.subscribeOk('quota-chan');
    const second = await RawClient.connect(srv, { key: QUOTA.key });
    const err = await second.waitError();
    assert.equal(
      err.raw,
      '{"event":"pusher:error","data":"{\\"code\\":4004,\\"message\\":\\"Application is over connection quota\\"}"}',
    );
    assert.equal(second.events('pusher:connection_established').length, 0);
    const closed = await second.waitClosed();
    process.stdout.write(`# observed quota close: ${JSON.stringify(closed)}\n`);
    // the first one is still served
    const quotaSdk = sdkFor(srv, QUOTA);
    await quotaSdk.trigger('quota-chan', 'still', {});
    await first.waitEvent('still');
    // once the first leaves, a new connection is admitted
    await first.close();
    await waitUntil(async () => (await sdkCall(quotaSdk.get({ path: '/connections' }))).json?.connections === 0, {
      what: 'quota app connections to drop to 0',
    });
    const third = await RawClient.established(srv, { key: QUOTA.key });
    await third.subscribeOk('quota-chan');
    await stillServed('quota');
  });

  it('a message bigger than max_message_size closes with 1009', async () => {
    await healthy();
    const c = await RawClient.established(srv, { key: SMALL.key });
    // a message within the limit is fine
    const okMsg = JSON.stringify({ event: 'pusher:ping', data: {} });
    assert.ok(okMsg.length < 256);
    c.send(okMsg);
    await c.waitEvent('pusher:pong');
    c.send({ event: 'pusher:subscribe', data: { channel: `big-${'x'.repeat(1000)}` } });
    const closed = await c.waitClosed();
    assert.equal(closed.code, 1009, `close: ${JSON.stringify(closed)}`);
    process.stdout.write(`# observed max_message_size close: ${JSON.stringify(closed)}\n`);
    assert.equal(c.events('pusher_internal:subscription_succeeded').length, 0);
    await stillServed('max-message-size');
  });

  it('rate limiting: the message after max_attempts gets 4301 "Rate limit exceeded"; the socket stays open', async () => {
    await healthy();
    const c = await RawClient.established(srv, { key: RL.key });
    c.subscribe('rl-chan'); // 1
    c.send({ event: 'pusher:ping', data: {} }); // 2
    c.send({ event: 'pusher:ping', data: {} }); // 3
    c.send({ event: 'pusher:ping', data: {} }); // 4: over the limit
    const err = await c.waitError();
    assert.equal(err.raw, '{"event":"pusher:error","data":"{\\"code\\":4301,\\"message\\":\\"Rate limit exceeded\\"}"}');
    assert.equal(c.events('pusher_internal:subscription_succeeded').length, 1);
    assert.equal(c.events('pusher:pong').length, 2, c.messages.dump());
    // still open and subscribed: an API event reaches it
    await sdkFor(srv, RL).trigger('rl-chan', 'after-limit', {});
    await c.waitEvent('after-limit');
    assert.ok(c.isOpen);
    await stillServed('rate-limit');
  });

  it('rate limiting with terminate_on_limit closes the socket', async () => {
    await healthy();
    const c = await RawClient.established(srv, { key: RLTERM.key });
    c.send({ event: 'pusher:ping', data: {} }); // 1
    await c.waitEvent('pusher:pong');
    c.send({ event: 'pusher:ping', data: {} }); // 2: over the limit
    const closed = await c.waitClosed();
    const errs = c.events('pusher:error');
    process.stdout.write(
      `# observed terminate_on_limit: close ${JSON.stringify(closed)}; errors before close: ${errs.map((e) => e.raw).join(' ') || 'none'}\n`,
    );
    assert.equal(c.events('pusher:pong').length, 1);
    for (const e of errs) assert.deepEqual(e.data, { code: 4301, message: 'Rate limit exceeded' });
    await stillServed('rate-limit-terminate');
  });
});
