// Client events (whispers): default policy "members", non-members, public
// channels, the 10/s limit, and policy "none".

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.js';
import {
  RawClient,
  pusherClient,
  sdkFor,
  subscribed,
  channelEvent,
  closeAllClients,
} from '../lib/clients.js';
import { Recorder, waitForCount } from '../lib/wait.js';

describe('client events, default policy (members)', () => {
  let srv;
  let sdk;
  before(async () => {
    srv = await startServer({ label: 'client-events' });
    sdk = sdkFor(srv);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  it('private channel: reaches the other subscribers, never the sender; data stays an object', async () => {
    const ch = 'private-chat';
    const clients = [];
    for (let i = 0; i < 3; i++) {
      const x = await RawClient.established(srv);
      await x.subscribeOk(ch, { sdk });
      clients.push(x);
    }
    const [sender, r1, r2] = clients;
    sender.send({ event: 'client-typing', channel: ch, data: { name: 'Ann', typing: true } });
    for (const r of [r1, r2]) {
      const m = await r.waitEvent('client-typing');
      assert.equal(m.raw, '{"event":"client-typing","channel":"private-chat","data":{"name":"Ann","typing":true}}');
      assert.equal(m.msg.user_id, undefined, 'no user_id on a private channel');
    }
    await sdk.trigger(ch, 'marker', {});
    await sender.waitEvent('marker');
    assert.equal(sender.events('client-typing').length, 0, `sender got its own client event:\n${sender.messages.dump()}`);
    assert.equal(sender.events('pusher:error').length, 0, sender.messages.dump());
  });

  it('presence channel: the client event carries the sender\'s user_id', async () => {
    const ch = 'presence-chat';
    const a = await RawClient.established(srv);
    await a.subscribeOk(ch, { sdk, presence: { user_id: '1', user_info: { name: 'Ann' } } });
    const b = await RawClient.established(srv);
    await b.subscribeOk(ch, { sdk, presence: { user_id: '2', user_info: { name: 'Bob' } } });
    a.send({ event: 'client-typing', channel: ch, data: { x: 1 } });
    const m = await b.waitEvent('client-typing');
    assert.equal(m.raw, '{"event":"client-typing","channel":"presence-chat","data":{"x":1},"user_id":"1"}');
  });

  it('pusher-js: channel.trigger() reaches the other client; presence metadata has user_id', async () => {
    const p1 = await pusherClient(srv, { presence: { user_id: '31', user_info: { n: 31 } } });
    const p2 = await pusherClient(srv, { presence: { user_id: '32', user_info: { n: 32 } } });
    const priv1 = await subscribed(p1, 'private-pjs-whisper');
    const priv2 = await subscribed(p2, 'private-pjs-whisper');
    assert.equal(priv1.trigger('client-hello', { from: 'p1' }), true);
    const got = await channelEvent(priv2, 'client-hello');
    assert.deepEqual(got.data, { from: 'p1' });

    const pres1 = await subscribed(p1, 'presence-pjs-whisper');
    const pres2 = await subscribed(p2, 'presence-pjs-whisper');
    const seen = new Recorder('presence client-hello with metadata');
    pres2.bind('client-hello', (data, metadata) => seen.push({ data, metadata }));
    pres1.trigger('client-hello', { from: 'p1' });
    const withMeta = await seen.waitFor(() => true, { what: 'client-hello on presence' });
    assert.deepEqual(withMeta.data, { from: 'p1' });
    assert.equal(withMeta.metadata?.user_id, '31');
  });

  it('not subscribed: pusher:error 4009 "The client is not a member of the specified channel." and nothing is delivered', async () => {
    const ch = 'private-closed';
    const member = await RawClient.established(srv);
    await member.subscribeOk(ch, { sdk });
    const outsider = await RawClient.established(srv);
    outsider.send({ event: 'client-intrude', channel: ch, data: { evil: true } });
    const err = await outsider.waitError();
    assert.equal(
      err.raw,
      '{"event":"pusher:error","data":"{\\"code\\":4009,\\"message\\":\\"The client is not a member of the specified channel.\\"}"}',
    );
    await sdk.trigger(ch, 'marker', {});
    await member.waitEvent('marker');
    assert.equal(member.events('client-intrude').length, 0, member.messages.dump());
    assert.ok(outsider.isOpen, 'the outsider stays connected');
  });

  it('public channel: the client event is refused with pusher:error and not delivered', async () => {
    const ch = 'public-chat';
    const a = await RawClient.established(srv);
    await a.subscribeOk(ch);
    const b = await RawClient.established(srv);
    await b.subscribeOk(ch);
    a.send({ event: 'client-shout', channel: ch, data: { loud: true } });
    const err = await a.waitError();
    // The brief expects a pusher:error; the code is recorded by this assertion's message.
    assert.equal(typeof err.data.code, 'number', err.raw);
    assert.ok([4009, 4301].includes(err.data.code), `unexpected code for a public-channel client event: ${err.raw}`);
    await sdk.trigger(ch, 'marker', {});
    await b.waitEvent('marker');
    assert.equal(b.events('client-shout').length, 0, `public client event was delivered:\n${b.messages.dump()}`);
    process.stdout.write(`# observed public-channel client event error: ${err.raw}\n`);
  });

  it('more than 10 client events per second: 4301 for the excess', async () => {
    const ch = 'private-burst';
    const a = await RawClient.established(srv);
    await a.subscribeOk(ch, { sdk });
    const b = await RawClient.established(srv);
    await b.subscribeOk(ch, { sdk });
    const N = 15;
    const from = a.mark();
    for (let i = 0; i < N; i++) a.send({ event: 'client-burst', channel: ch, data: { i } });
    // each event is answered either by delivery to b or by an error to a
    const errors = await waitForCount(a.messages, (m) => m.event === 'pusher:error', N - 10, {
      from,
      what: 'pusher:error 4301',
    });
    for (const e of errors) {
      assert.equal(e.data.code, 4301, e.raw);
      assert.equal(typeof e.data.message, 'string');
    }
    await sdk.trigger(ch, 'marker', {});
    await b.waitEvent('marker');
    const delivered = b.events('client-burst');
    await a.waitEvent('marker', { from });
    const allErrors = a.events('pusher:error', from);
    assert.equal(delivered.length, 10, `delivered ${delivered.length} of ${N}; errors ${allErrors.length}`);
    assert.equal(allErrors.length, N - 10);
    assert.deepEqual(
      delivered.map((m) => m.data.i),
      [...Array(10).keys()],
      'the first ten are delivered in order',
    );
    process.stdout.write(`# observed client-event rate limit error: ${allErrors[0].raw}\n`);
  });
});

describe('client events, policy "none"', () => {
  let srv;
  let sdk;
  before(async () => {
    srv = await startServer({ label: 'client-events-none', env: { REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM: 'none' } });
    sdk = sdkFor(srv);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  it('pusher:error 4301 "The app does not have client messaging enabled." and nothing is delivered', async () => {
    const ch = 'private-silent';
    const a = await RawClient.established(srv);
    await a.subscribeOk(ch, { sdk });
    const b = await RawClient.established(srv);
    await b.subscribeOk(ch, { sdk });
    a.send({ event: 'client-hi', channel: ch, data: {} });
    const err = await a.waitError();
    assert.equal(
      err.raw,
      '{"event":"pusher:error","data":"{\\"code\\":4301,\\"message\\":\\"The app does not have client messaging enabled.\\"}"}',
    );
    await sdk.trigger(ch, 'marker', {});
    await b.waitEvent('marker');
    assert.equal(b.events('client-hi').length, 0, b.messages.dump());
  });
});

