// Channel types: public, private-, presence-, private-encrypted-, cache-,
// private-cache-, presence-cache-.

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
  MASTER_KEY_B64,
} from '../lib/clients.js';
import { PusherSDK } from '../lib/clients.js';

describe('channels', () => {
  let srv;
  let sdk;
  before(async () => {
    srv = await startServer({ label: 'channels' });
    sdk = sdkFor(srv);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  it('public channel: subscription_succeeded with data "{}" (exact bytes)', async () => {
    const c = await RawClient.established(srv);
    const ok = await c.subscribeOk('news');
    assert.equal(ok.raw, '{"event":"pusher_internal:subscription_succeeded","data":"{}","channel":"news"}');
  });

  it('private channel: signed subscribe succeeds with data "{}"', async () => {
    const c = await RawClient.established(srv);
    const ok = await c.subscribeOk('private-orders', { sdk });
    assert.equal(ok.raw, '{"event":"pusher_internal:subscription_succeeded","data":"{}","channel":"private-orders"}');
  });

  it('presence channel: subscription_succeeded carries the member block, de-duplicated by user_id', async () => {
    const ch = 'presence-lobby';
    const a = await RawClient.established(srv);
    const okA = await a.subscribeOk(ch, { sdk, presence: { user_id: '1', user_info: { name: 'Ann' } } });
    assert.equal(
      okA.raw,
      '{"event":"pusher_internal:subscription_succeeded","data":"{\\"presence\\":{\\"count\\":1,\\"ids\\":[\\"1\\"],\\"hash\\":{\\"1\\":{\\"name\\":\\"Ann\\"}}}}","channel":"presence-lobby"}',
    );
    const b = await RawClient.established(srv);
    await b.subscribeOk(ch, { sdk, presence: { user_id: '2', user_info: { name: 'Bob' } } });
    // a second connection of user 1
    const a2 = await RawClient.established(srv);
    const okA2 = await a2.subscribeOk(ch, { sdk, presence: { user_id: '1', user_info: { name: 'Ann' } } });
    const p = okA2.data.presence;
    assert.equal(p.count, 2, `presence block: ${okA2.raw}`);
    assert.deepEqual([...p.ids].map(String).sort(), ['1', '2']);
    assert.deepEqual(p.hash, { 1: { name: 'Ann' }, 2: { name: 'Bob' } });
  });

  it('pusher-js: private and presence subscriptions authorized by the SDK', async () => {
    const p1 = await pusherClient(srv, { presence: { user_id: '10', user_info: { name: 'Ten' } } });
    const p2 = await pusherClient(srv, { presence: { user_id: '11', user_info: { name: 'Eleven' } } });
    const priv = await subscribed(p1, 'private-pjs');
    const pres1 = await subscribed(p1, 'presence-pjs');
    assert.equal(pres1.members.count, 1);
    assert.equal(pres1.members.me.id, '10');
    const pres2 = await subscribed(p2, 'presence-pjs');
    assert.equal(pres2.members.count, 2);
    assert.deepEqual(pres2.members.get('10').info, { name: 'Ten' });
    await sdk.trigger(['private-pjs', 'presence-pjs'], 'ping-all', { ok: true });
    assert.deepEqual((await channelEvent(priv, 'ping-all')).data, { ok: true });
    assert.deepEqual((await channelEvent(pres1, 'ping-all')).data, { ok: true });
    assert.deepEqual((await channelEvent(pres2, 'ping-all')).data, { ok: true });
  });

  it('private-encrypted channel: pusher-js decrypts what the SDK encrypted; the wire carries only nonce+ciphertext', async () => {
    const name = 'private-encrypted-vault';
    const p = await pusherClient(srv);
    const ch = await subscribed(p, name);
    const raw = await RawClient.established(srv);
    await raw.subscribeOk(name, { sdk });
    const from = raw.mark();
    await sdk.trigger(name, 'secret-message', { text: 'the eagle lands' });
    const ev = await channelEvent(ch, 'secret-message');
    assert.deepEqual(ev.data, { text: 'the eagle lands' });
    const wire = await raw.waitEvent('secret-message', { from });
    assert.equal(wire.channel, name);
    assert.deepEqual(Object.keys(wire.data).sort(), ['ciphertext', 'nonce']);
    assert.ok(!wire.raw.includes('eagle'), 'plaintext must not be on the wire');
    // an SDK with a different master key produces events pusher-js cannot decrypt:
    // they are dropped by the client, the next good one still arrives
    const other = new PusherSDK({
      appId: srv.app.app_id,
      key: srv.app.key,
      secret: srv.app.secret,
      host: srv.host,
      port: srv.port,
      useTLS: false,
      encryptionMasterKeyBase64: Buffer.alloc(32, 9).toString('base64'),
    });
    assert.notEqual(MASTER_KEY_B64, Buffer.alloc(32, 9).toString('base64'));
    await other.trigger(name, 'secret-message', { text: 'garbled' });
    await sdk.trigger(name, 'secret-message', { text: 'second' });
    const second = await channelEvent(ch, 'secret-message', { pred: (e) => e.data?.text === 'second' });
    assert.deepEqual(second.data, { text: 'second' });
    assert.equal(ch.recorder.filter((e) => e.data?.text === 'garbled').length, 0);
  });

  for (const [name, presence] of [
    ['cache-prices', undefined],
    ['private-cache-prices', undefined],
    ['presence-cache-prices', { user_id: '7', user_info: { name: 'Seven' } }],
  ]) {
    it(`${name.replace(/-prices$/, '-')} channel: cache_miss when empty, else the last event`, async () => {
      const a = await RawClient.established(srv);
      const from = a.mark();
      await a.subscribeOk(name, { sdk, presence });
      const miss = await a.waitEvent('pusher:cache_miss', { from });
      assert.equal(miss.channel, name);
      assert.deepEqual(JSON.parse(miss.raw).channel, name);
      // order: subscription_succeeded first, then cache_miss
      const iOk = a.messages.indexOf((m) => m.event === 'pusher_internal:subscription_succeeded', from);
      const iMiss = a.messages.indexOf((m) => m.event === 'pusher:cache_miss', from);
      assert.ok(iOk < iMiss, 'subscription_succeeded comes before cache_miss');

      await sdk.trigger(name, 'price', { v: 1 });
      await sdk.trigger(name, 'price', { v: 2 });
      await a.waitEvent('price', { pred: (m) => m.data.v === 2 });

      const b = await RawClient.established(srv);
      const fromB = b.mark();
      await b.subscribeOk(name, { sdk, presence: presence && { user_id: '8', user_info: { name: 'Eight' } } });
      const cached = await b.waitEvent('price', { from: fromB });
      assert.equal(cached.raw, `{"event":"price","data":"{\\"v\\":2}","channel":"${name}"}`);
      assert.equal(b.events('pusher:cache_miss', fromB).length, 0, 'no cache_miss when something was cached');
      assert.equal(b.events('price', fromB).length, 1, 'only the last event is replayed');
    });
  }

  it('pusher-js sees pusher:cache_miss on a fresh cache channel', async () => {
    const p = await pusherClient(srv);
    const ch = await subscribed(p, 'cache-pjs');
    const miss = await channelEvent(ch, 'pusher:cache_miss');
    assert.ok(miss);
  });
});
