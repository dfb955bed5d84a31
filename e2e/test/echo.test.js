// Laravel Echo 2 against the server, as a Laravel front end uses it.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.js';
import { echoClient, echoSubscribed, sdkFor, closeAllClients } from '../lib/clients.js';
import { Recorder } from '../lib/wait.js';

describe('Laravel Echo', () => {
  let srv;
  let sdk;
  before(async () => {
    srv = await startServer({ label: 'echo' });
    sdk = sdkFor(srv);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  for (const broadcaster of ['reverb', 'pusher']) {
    it(`broadcaster "${broadcaster}": channel().listen() gets namespaced and dotted events`, async () => {
      const echo = await echoClient(srv, { broadcaster });
      const got = new Recorder('echo listen');
      const ch = echo
        .channel('orders')
        .listen('OrderShipped', (e) => got.push({ kind: 'namespaced', e }))
        .listen('.order.custom', (e) => got.push({ kind: 'dotted', e }));
      await echoSubscribed(ch);
      await sdk.trigger('orders', 'App\\Events\\OrderShipped', { order: { id: 5 } });
      await sdk.trigger('orders', 'order.custom', { ok: true });
      assert.deepEqual((await got.waitFor((x) => x.kind === 'namespaced', { what: 'OrderShipped' })).e, {
        order: { id: 5 },
      });
      assert.deepEqual((await got.waitFor((x) => x.kind === 'dotted', { what: '.order.custom' })).e, { ok: true });
    });
  }

  it('private().listen() and whisper()/listenForWhisper() between two browsers', async () => {
    const e1 = await echoClient(srv);
    const e2 = await echoClient(srv);
    const got = new Recorder('echo private');
    const c1 = e1.private('chat.9').listenForWhisper('typing', (e) => got.push({ who: 'e1', kind: 'whisper', e }));
    const c2 = e2
      .private('chat.9')
      .listen('.message', (e) => got.push({ who: 'e2', kind: 'message', e }))
      .listenForWhisper('typing', (e) => got.push({ who: 'e2', kind: 'whisper', e }));
    await echoSubscribed(c1);
    await echoSubscribed(c2);
    await sdk.trigger('private-chat.9', 'message', { body: 'hi' });
    assert.deepEqual((await got.waitFor((x) => x.kind === 'message', { what: '.message' })).e, { body: 'hi' });
    c1.whisper('typing', { name: 'Ann' });
    assert.deepEqual((await got.waitFor((x) => x.who === 'e2' && x.kind === 'whisper', { what: 'whisper' })).e, {
      name: 'Ann',
    });
    // the whisperer does not hear itself: marker through the same channel
    await sdk.trigger('private-chat.9', 'message', { body: 'marker' });
    await got.waitFor((x) => x.kind === 'message' && x.e.body === 'marker', { what: 'marker' });
    assert.equal(got.filter((x) => x.who === 'e1' && x.kind === 'whisper').length, 0);
  });

  it('join(): whisper on a presence channel reaches the other member', async () => {
    const e1 = await echoClient(srv, { presence: { user_id: '1', user_info: { name: 'Ann' } } });
    const e2 = await echoClient(srv, { presence: { user_id: '2', user_info: { name: 'Bob' } } });
    const got = new Recorder('echo presence whisper');
    const r1 = e1.join('room.3');
    const r2 = e2.join('room.3').listenForWhisper('wave', (e) => got.push(e));
    await echoSubscribed(r1);
    await echoSubscribed(r2);
    r1.whisper('wave', { hand: 'left' });
    assert.deepEqual(await got.waitFor(() => true, { what: 'wave' }), { hand: 'left' });
  });

  it('toOthers(): X-Socket-ID excludes the sender (socket_id on trigger)', async () => {
    const sender = await echoClient(srv);
    const other = await echoClient(srv);
    const got = new Recorder('echo toOthers');
    const cs = sender.channel('feed').listen('.posted', (e) => got.push({ who: 'sender', e }));
    const co = other.channel('feed').listen('.posted', (e) => got.push({ who: 'other', e }));
    await echoSubscribed(cs);
    await echoSubscribed(co);
    // what Laravel does with broadcast(...)->toOthers() and the X-Socket-ID header
    await sdk.trigger('feed', 'posted', { n: 1 }, { socket_id: sender.socketId() });
    await sdk.trigger('feed', 'posted', { n: 2 });
    await got.waitFor((x) => x.who === 'other' && x.e.n === 2, { what: 'n=2 on other' });
    await got.waitFor((x) => x.who === 'sender' && x.e.n === 2, { what: 'n=2 on sender' });
    assert.deepEqual(
      got.filter((x) => x.who === 'other').map((x) => x.e.n),
      [1, 2],
    );
    assert.deepEqual(
      got.filter((x) => x.who === 'sender').map((x) => x.e.n),
      [2],
      'the sender must not receive its own toOthers() event',
    );
  });

  it('encryptedPrivate().listen() decrypts', async () => {
    const echo = await echoClient(srv);
    const got = new Recorder('echo encrypted');
    const ch = echo.encryptedPrivate('safe.1').listen('.sealed', (e) => got.push(e));
    await echoSubscribed(ch);
    await sdk.trigger('private-encrypted-safe.1', 'sealed', { secret: 42 });
    assert.deepEqual(await got.waitFor(() => true, { what: '.sealed' }), { secret: 42 });
  });
});
