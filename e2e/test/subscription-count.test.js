// The subscription_counting app setting: subscribers of a non-presence
// channel get pusher_internal:subscription_count, which pusher-js surfaces as
// channel.bind('pusher:subscription_count', data => data.subscription_count)
// (and channel.subscriptionCount). Apps without the setting, and presence
// channels, get none: checked with a later triggered marker event.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEFAULT_APP } from '../lib/server.js';
import { RawClient, pusherClient, sdkFor, sdkCall, subscribed, channelEvent, closeAllClients } from '../lib/clients.js';

const COUNTING = { ...DEFAULT_APP, subscription_counting: true };
const PLAIN = { app_id: 'plain-app', key: 'plain-key', secret: 'plain-secret' };

const counts = (channel, from = 0) =>
  channel.recorder.filter((e) => e.event === 'pusher:subscription_count', from).map((e) => e.data.subscription_count);

const waitCount = (channel, n, from = 0) =>
  channelEvent(channel, 'pusher:subscription_count', { from, pred: (e) => e.data?.subscription_count === n });

describe('subscription_count', () => {
  let srv;
  let sdk;
  let sdkPlain;
  before(async () => {
    srv = await startServer({ label: 'subscription-count', config: { apps: [COUNTING, PLAIN] } });
    sdk = sdkFor(srv);
    sdkPlain = sdkFor(srv, PLAIN);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  it('pusher-js subscribers get pusher:subscription_count as the count goes 1, 2, 1', async () => {
    const p1 = await pusherClient(srv, { label: 'p1' });
    const p2 = await pusherClient(srv, { label: 'p2' });
    const c1 = await subscribed(p1, 'sc-1');
    const one = await waitCount(c1, 1);
    assert.deepEqual(one.data, { subscription_count: 1 });
    const m1 = c1.recorder.mark();
    const c2 = await subscribed(p2, 'sc-1');
    await waitCount(c1, 2, m1);
    await waitCount(c2, 2);
    assert.equal(c1.subscriptionCount, 2, 'pusher-js keeps the last count in channel.subscriptionCount');
    const m2 = c1.recorder.mark();
    p2.unsubscribe('sc-1');
    await waitCount(c1, 1, m2);
    assert.equal(c1.subscriptionCount, 1);
  });

  it('the exact frame on the wire', async () => {
    const c = await RawClient.established(srv);
    await c.subscribeOk('sc-raw');
    const m = await c.waitEvent('pusher_internal:subscription_count', { channel: 'sc-raw' });
    assert.deepEqual(m.msg, {
      event: 'pusher_internal:subscription_count',
      channel: 'sc-raw',
      data: JSON.stringify({ subscription_count: 1 }),
    });
  });

  it('private channels count too; the count matches the HTTP API', async () => {
    const ps = await Promise.all([1, 2, 3].map((i) => pusherClient(srv, { label: `p${i}` })));
    const chans = [];
    for (const p of ps) chans.push(await subscribed(p, 'private-sc-2'));
    await waitCount(chans[0], 3);
    await waitCount(chans[2], 3);
    const info = await sdkCall(sdk.get({ path: '/channels/private-sc-2', params: { info: 'subscription_count' } }));
    assert.equal(info.status, 200, info.body);
    assert.equal(info.json.subscription_count, 3);
  });

  it('none on presence channels', async () => {
    const p = await pusherClient(srv, { presence: { user_id: 'x', user_info: {} } });
    const c = await subscribed(p, 'presence-sc-3');
    await sdk.trigger('presence-sc-3', 'marker', { m: 1 });
    await channelEvent(c, 'marker');
    assert.deepEqual(counts(c), [], c.recorder.dump());
  });

  it('none for an app without subscription_counting', async () => {
    const p = await pusherClient(srv, { app: PLAIN, sdk: sdkPlain });
    const p2 = await pusherClient(srv, { app: PLAIN, sdk: sdkPlain });
    const c = await subscribed(p, 'sc-plain');
    await subscribed(p2, 'sc-plain');
    await sdkPlain.trigger('sc-plain', 'marker', { m: 1 });
    await channelEvent(c, 'marker');
    assert.deepEqual(counts(c), [], c.recorder.dump());
  });
});
