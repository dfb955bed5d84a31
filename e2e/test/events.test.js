// HTTP API happy paths through the official pusher server SDK: trigger,
// triggerBatch, socket_id exclusion, info counts, channel listings, channel
// info, presence users, connection count.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.js';
import { RawClient, sdkFor, sdkCall, closeAllClients } from '../lib/clients.js';
import { waitUntil } from '../lib/wait.js';

describe('events and queries via the pusher SDK', () => {
  let srv;
  let sdk;
  before(async () => {
    srv = await startServer({ label: 'events' });
    sdk = sdkFor(srv);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  const connectionsNow = async () => (await sdkCall(sdk.get({ path: '/connections' }))).json?.connections;

  it('trigger reaches every subscriber with exact name, data and channel; answers {}', async () => {
    const subs = [];
    for (let i = 0; i < 3; i++) {
      const c = await RawClient.established(srv);
      await c.subscribeOk('orders');
      subs.push(c);
    }
    const res = await sdkCall(sdk.trigger('orders', 'order.shipped', { id: 7, to: 'Ann' }));
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, {});
    for (const c of subs) {
      const m = await c.waitEvent('order.shipped');
      assert.equal(m.raw, '{"event":"order.shipped","data":"{\\"id\\":7,\\"to\\":\\"Ann\\"}","channel":"orders"}');
    }
  });

  it('string data is delivered verbatim', async () => {
    const c = await RawClient.established(srv);
    await c.subscribeOk('verbatim');
    await sdk.trigger('verbatim', 'text', 'plain text, not JSON');
    const m = await c.waitEvent('text');
    assert.equal(m.msg.data, 'plain text, not JSON');
  });

  it('trigger to several channels sends one message per channel', async () => {
    const a = await RawClient.established(srv);
    await a.subscribeOk('multi-a');
    await a.subscribeOk('multi-b');
    const b = await RawClient.established(srv);
    await b.subscribeOk('multi-b');
    const from = a.mark();
    await sdk.trigger(['multi-a', 'multi-b', 'multi-empty'], 'fanout', { x: 1 });
    await a.waitEvent('fanout', { channel: 'multi-a', from });
    await a.waitEvent('fanout', { channel: 'multi-b', from });
    const mb = await b.waitEvent('fanout', { channel: 'multi-b' });
    assert.deepEqual(mb.data, { x: 1 });
    // marker: b only has multi-b
    await sdk.trigger('multi-b', 'marker', {});
    await b.waitEvent('marker');
    assert.equal(b.events('fanout').length, 1);
  });

  it('triggerBatch delivers each item to its channel; answers {"batch":{}}', async () => {
    const a = await RawClient.established(srv);
    await a.subscribeOk('batch-1');
    await a.subscribeOk('batch-2');
    const res = await sdkCall(
      sdk.triggerBatch([
        { channel: 'batch-1', name: 'b-one', data: { n: 1 } },
        { channel: 'batch-2', name: 'b-two', data: 'two' },
      ]),
    );
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(res.json, { batch: {} });
    const one = await a.waitEvent('b-one', { channel: 'batch-1' });
    assert.equal(one.raw, '{"event":"b-one","data":"{\\"n\\":1}","channel":"batch-1"}');
    const two = await a.waitEvent('b-two', { channel: 'batch-2' });
    assert.equal(two.msg.data, 'two');
  });

  it('socket_id excludes that connection only (Laravel toOthers)', async () => {
    const a = await RawClient.established(srv);
    await a.subscribeOk('excl');
    const b = await RawClient.established(srv);
    await b.subscribeOk('excl');
    await sdk.trigger('excl', 'not-for-a', { v: 1 }, { socket_id: a.socketId });
    await sdk.trigger('excl', 'marker', { v: 2 });
    await b.waitEvent('not-for-a');
    await b.waitEvent('marker');
    await a.waitEvent('marker');
    assert.equal(a.events('not-for-a').length, 0, `a received an excluded event:\n${a.messages.dump()}`);
    // batch items honour socket_id too
    await sdk.triggerBatch([{ channel: 'excl', name: 'batch-not-for-b', data: {}, socket_id: b.socketId }]);
    await sdk.trigger('excl', 'marker2', {});
    await a.waitEvent('batch-not-for-b');
    await b.waitEvent('marker2');
    assert.equal(b.events('batch-not-for-b').length, 0, `b received an excluded batch event:\n${b.messages.dump()}`);
  });

  it('trigger with info returns subscription_count / user_count per channel', async () => {
    const pub1 = await RawClient.established(srv);
    await pub1.subscribeOk('counted');
    const pub2 = await RawClient.established(srv);
    await pub2.subscribeOk('counted');
    for (const [uid, i] of [
      ['1', 0],
      ['2', 1],
      ['2', 2],
    ]) {
      const c = await RawClient.established(srv);
      await c.subscribeOk('presence-counted', { sdk, presence: { user_id: uid, user_info: { i } } });
    }
    const r1 = await sdkCall(sdk.trigger('counted', 'x', {}, { info: 'subscription_count' }));
    assert.equal(r1.status, 200, r1.body);
    assert.deepEqual(r1.json, { channels: { counted: { subscription_count: 2 } } });
    const r2 = await sdkCall(sdk.trigger('presence-counted', 'x', {}, { info: 'user_count' }));
    assert.equal(r2.status, 200, r2.body);
    assert.deepEqual(r2.json, { channels: { 'presence-counted': { user_count: 2 } } });
    const r3 = await sdkCall(
      sdk.triggerBatch([
        { channel: 'presence-counted', name: 'x', data: {}, info: 'user_count' },
        { channel: 'counted', name: 'x', data: {}, info: 'subscription_count' },
      ]),
    );
    assert.equal(r3.status, 200, r3.body);
    assert.deepEqual(r3.json, { batch: [{ user_count: 2 }, { subscription_count: 2 }] });
  });

  it('GET /channels lists occupied channels, with filter_by_prefix and info=user_count', async () => {
    const a = await RawClient.established(srv);
    await a.subscribeOk('listing-public');
    await a.subscribeOk('presence-listing-one', { sdk, presence: { user_id: '1' } });
    const b = await RawClient.established(srv);
    await b.subscribeOk('presence-listing-one', { sdk, presence: { user_id: '2' } });
    await b.subscribeOk('presence-listing-two', { sdk, presence: { user_id: '2' } });

    const all = await sdkCall(sdk.get({ path: '/channels' }));
    assert.equal(all.status, 200, all.body);
    assert.deepEqual(all.json.channels['listing-public'], {});
    assert.ok('presence-listing-one' in all.json.channels);

    const filtered = await sdkCall(
      sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-listing-', info: 'user_count' } }),
    );
    assert.equal(filtered.status, 200, filtered.body);
    assert.deepEqual(filtered.json, {
      channels: {
        'presence-listing-one': { user_count: 2 },
        'presence-listing-two': { user_count: 1 },
      },
    });
    // an emptied channel disappears from the listing
    await b.close();
    await waitUntil(
      async () => {
        const r = await sdkCall(sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-listing-' } }));
        return r.json && !('presence-listing-two' in r.json.channels) && r.json;
      },
      { what: 'presence-listing-two to leave the listing' },
    ).then((json) => assert.deepEqual(json, { channels: { 'presence-listing-one': {} } }));
  });

  it('GET /channels/{name}: occupied, subscription_count, user_count', async () => {
    const a = await RawClient.established(srv);
    await a.subscribeOk('info-public');
    const b = await RawClient.established(srv);
    await b.subscribeOk('info-public');
    await a.subscribeOk('presence-info', { sdk, presence: { user_id: '5' } });
    await b.subscribeOk('presence-info', { sdk, presence: { user_id: '5' } });

    const pub = await sdkCall(sdk.get({ path: '/channels/info-public', params: { info: 'subscription_count' } }));
    assert.equal(pub.status, 200, pub.body);
    assert.deepEqual(pub.json, { occupied: true, subscription_count: 2 });

    const pres = await sdkCall(sdk.get({ path: '/channels/presence-info', params: { info: 'user_count' } }));
    assert.equal(pres.status, 200, pres.body);
    assert.deepEqual(pres.json, { occupied: true, user_count: 1 });

    const plain = await sdkCall(sdk.get({ path: '/channels/info-public' }));
    assert.deepEqual(plain.json, { occupied: true });

    const empty = await sdkCall(sdk.get({ path: '/channels/nobody-here', params: { info: 'subscription_count' } }));
    assert.equal(empty.status, 200, empty.body);
    assert.deepEqual(empty.json, { occupied: false });
  });

  it('GET /channels/{presence}/users lists distinct users', async () => {
    for (const uid of ['1', '2', '2', '3']) {
      const c = await RawClient.established(srv);
      await c.subscribeOk('presence-users', { sdk, presence: { user_id: uid, user_info: { uid } } });
    }
    const res = await sdkCall(sdk.get({ path: '/channels/presence-users/users' }));
    assert.equal(res.status, 200, res.body);
    const ids = res.json.users.map((u) => String(u.id)).sort();
    assert.deepEqual(ids, ['1', '2', '3']);
    assert.deepEqual(res.json, { users: [{ id: '1' }, { id: '2' }, { id: '3' }] });
  });

  it('GET /connections counts connections', async () => {
    await closeAllClients();
    await waitUntil(async () => (await connectionsNow()) === 0, { what: '{"connections":0}' });
    const a = await RawClient.established(srv);
    await a.subscribeOk('conn-count');
    const b = await RawClient.established(srv);
    await b.subscribeOk('conn-count');
    await b.subscribeOk('conn-count-2');
    const res = await sdkCall(sdk.get({ path: '/connections' }));
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(res.json, { connections: 2 });
    await b.close();
    await waitUntil(async () => (await connectionsNow()) === 1, { what: '{"connections":1} after a close' });
  });
});
