// Webhooks ([[apps.webhooks]] and [webhooks]) on one node: receivers on
// loopback check every request with the official pusher SDK's
// webhook().isValid(), the exact Content-Type and the endpoint's extra
// headers, and the tests check each event's exact fields.
//
// The endpoints send one request at a time (concurrency = 1) and without
// batching, so each receiver gets its events in the order the server emitted
// them. A test that must show an event was NOT sent makes the server emit a
// later event of the same kind for the same endpoint (a "fence", on another
// channel) and checks, once the fence has arrived, that the forbidden event
// did not come before it. For channel_vacated and member_removed the fence is
// itself held back the same delay, after the forbidden one would have been.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEFAULT_APP } from '../lib/server.js';
import { RawClient, sdkFor, closeAllClients } from '../lib/clients.js';
import { startReceiver, signBody } from '../lib/webhooks.js';

const DELAY = 400; // [webhooks] vacate_delay_ms
const ALL = [
  'channel_occupied',
  'channel_vacated',
  'member_added',
  'member_removed',
  'client_event',
  'cache_miss',
  'subscription_count',
];

// An event as received, without the receiver's bookkeeping.
const plain = ({ _request, _at, ...e }) => e;

function unsubscribe(c, channel) {
  c.send({ event: 'pusher:unsubscribe', data: { channel } });
}

describe('webhooks', () => {
  let srv;
  let sdk;
  let rxAll; // every event type, header X-Tenant: a
  let rxPriv; // occupied/vacated/client_event of private-* only, header X-Tenant: b
  let rxFlaky; // channel_occupied of retry-* only; answers 500 twice, then 200
  const receivers = () => [rxAll, rxPriv, rxFlaky];

  before(async () => {
    rxAll = await startReceiver({ label: 'rx all', headers: { 'X-Tenant': 'a' } });
    rxPriv = await startReceiver({ label: 'rx private-*', headers: { 'X-Tenant': 'b' } });
    rxFlaky = await startReceiver({ label: 'rx flaky', status: (n) => (n <= 2 ? 500 : 200) });
    srv = await startServer({
      label: 'webhooks',
      config: {
        webhooks: {
          vacate_delay_ms: DELAY,
          initial_backoff_ms: 100,
          max_backoff_ms: 400,
          jitter: -1,
          timeout_ms: 2000,
          concurrency: 1,
          batch: false,
        },
        apps: [
          {
            ...DEFAULT_APP,
            subscription_counting: true,
            webhooks: [
              { url: rxAll.url, event_types: ALL, headers: { 'X-Tenant': 'a' } },
              {
                url: rxPriv.url,
                event_types: ['channel_occupied', 'channel_vacated', 'client_event'],
                headers: { 'X-Tenant': 'b' },
                filter: { channel_name_starts_with: 'private-' },
              },
              {
                url: rxFlaky.url,
                event_types: ['channel_occupied'],
                filter: { channel_name_starts_with: 'retry-' },
              },
            ],
          },
        ],
      },
    });
    sdk = sdkFor(srv);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
    await Promise.all(receivers().map((r) => r?.close()));
  });

  it('the receiver accepts a body signed by hand (checks the checker)', async () => {
    const rx = await startReceiver({ label: 'rx self-check', headers: { 'X-Tenant': 'z' } });
    try {
      const raw = JSON.stringify({ time_ms: Date.now(), events: [{ name: 'channel_occupied', channel: 'x' }] });
      const res = await fetch(rx.url, {
        method: 'POST',
        body: raw,
        headers: {
          'content-type': 'application/json',
          'x-pusher-key': DEFAULT_APP.key,
          'x-pusher-signature': signBody(DEFAULT_APP.secret, raw),
          'x-tenant': 'z',
        },
      });
      assert.equal(res.status, 200);
      rx.assertAllValid();
      const bad = await fetch(rx.url, {
        method: 'POST',
        body: raw,
        headers: { 'content-type': 'application/json', 'x-pusher-key': DEFAULT_APP.key, 'x-pusher-signature': '00' },
      });
      assert.equal(bad.status, 200);
      assert.throws(() => rx.assertAllValid(), /isValid\(\) is false/);
    } finally {
      await rx.close();
    }
  });

  it('channel_occupied once, on the first subscription', async () => {
    const c1 = await RawClient.established(srv);
    const c2 = await RawClient.established(srv);
    await c1.subscribeOk('occ-1');
    const ev = await rxAll.waitEvent('channel_occupied', 'occ-1');
    assert.deepEqual(plain(ev), { name: 'channel_occupied', channel: 'occ-1' });
    await c2.subscribeOk('occ-1');
    // fence: a later channel_occupied on another channel
    await c1.subscribeOk('occ-1-fence');
    await rxAll.waitEvent('channel_occupied', 'occ-1-fence');
    assert.equal(rxAll.count('channel_occupied', 'occ-1'), 1, `one channel_occupied for occ-1:\n${rxAll.dump()}`);
    rxAll.assertAllValid();
  });

  it('channel_vacated after the last unsubscribe, held back vacate_delay_ms, sent once', async () => {
    const c1 = await RawClient.established(srv);
    const c2 = await RawClient.established(srv);
    await c1.subscribeOk('vac-1');
    await c2.subscribeOk('vac-1');
    await rxAll.waitEvent('channel_occupied', 'vac-1');
    unsubscribe(c1, 'vac-1');
    const t0 = Date.now();
    unsubscribe(c2, 'vac-1');
    const ev = await rxAll.waitEvent('channel_vacated', 'vac-1', { ms: DELAY + 3000 });
    assert.deepEqual(plain(ev), { name: 'channel_vacated', channel: 'vac-1' });
    assert.ok(ev._at - t0 >= DELAY - 10, `channel_vacated came ${ev._at - t0} ms after the last unsubscribe, before the ${DELAY} ms delay`);
    // fence: a later channel_vacated, held back as long
    await c1.subscribeOk('vac-1-fence');
    unsubscribe(c1, 'vac-1-fence');
    await rxAll.waitEvent('channel_vacated', 'vac-1-fence', { ms: DELAY + 3000 });
    assert.equal(rxAll.count('channel_vacated', 'vac-1'), 1, `one channel_vacated for vac-1:\n${rxAll.dump()}`);
    // a disconnect vacates too
    const c3 = await RawClient.established(srv);
    await c3.subscribeOk('vac-2');
    await rxAll.waitEvent('channel_occupied', 'vac-2');
    await c3.close();
    assert.deepEqual(plain(await rxAll.waitEvent('channel_vacated', 'vac-2', { ms: DELAY + 3000 })), {
      name: 'channel_vacated',
      channel: 'vac-2',
    });
    rxAll.assertAllValid();
  });

  it('subscribing again within the delay sends neither channel_vacated nor a second channel_occupied', async () => {
    const c = await RawClient.established(srv);
    await c.subscribeOk('resub-1');
    await rxAll.waitEvent('channel_occupied', 'resub-1');
    // unsubscribe and subscribe back to back: the server sees them a few ms apart
    const from = c.mark();
    unsubscribe(c, 'resub-1');
    c.subscribe('resub-1');
    await c.waitEvent('pusher_internal:subscription_succeeded', { channel: 'resub-1', from });
    // fence: a channel vacated after resub-1's would-be channel_vacated was
    // held, so sent after it
    await c.subscribeOk('resub-1-fence');
    unsubscribe(c, 'resub-1-fence');
    await rxAll.waitEvent('channel_vacated', 'resub-1-fence', { ms: DELAY + 3000 });
    assert.equal(rxAll.count('channel_vacated', 'resub-1'), 0, `no channel_vacated for resub-1:\n${rxAll.dump()}`);
    assert.equal(rxAll.count('channel_occupied', 'resub-1'), 1, `one channel_occupied for resub-1:\n${rxAll.dump()}`);
    // and it still vacates normally afterwards
    unsubscribe(c, 'resub-1');
    await rxAll.waitEvent('channel_vacated', 'resub-1', { ms: DELAY + 3000 });
    rxAll.assertAllValid();
  });

  it('member_added once per user (two connections), member_removed once after the last one leaves', async () => {
    const ch = 'presence-wh-1';
    const u1 = { user_id: 'u1', user_info: { name: 'One' } };
    const u2 = { user_id: 'u2', user_info: { name: 'Two' } };
    const a = await RawClient.established(srv);
    const b = await RawClient.established(srv);
    const other = await RawClient.established(srv);
    await a.subscribeOk(ch, { sdk, presence: u1 });
    assert.deepEqual(plain(await rxAll.waitEvent('member_added', ch)), { name: 'member_added', channel: ch, user_id: 'u1' });
    await b.subscribeOk(ch, { sdk, presence: u1 });
    // fence: another user's member_added
    await other.subscribeOk(ch, { sdk, presence: u2 });
    await rxAll.waitEvent('member_added', ch, { pred: (e) => e.user_id === 'u2' });
    assert.equal(rxAll.count('member_added', ch, (e) => e.user_id === 'u1'), 1, `one member_added for u1:\n${rxAll.dump()}`);
    assert.equal(rxAll.count('channel_occupied', ch), 1, `one channel_occupied for ${ch}:\n${rxAll.dump()}`);

    // u1's first connection leaves: u1 is still there
    unsubscribe(a, ch);
    const t0 = Date.now();
    await b.close(); // u1's last connection
    const removed = await rxAll.waitEvent('member_removed', ch, { ms: DELAY + 3000 });
    assert.deepEqual(plain(removed), { name: 'member_removed', channel: ch, user_id: 'u1' });
    assert.ok(removed._at - t0 >= DELAY - 10, `member_removed came ${removed._at - t0} ms after u1 left, before the delay`);
    // fence: u2's member_removed, held after any second one for u1
    unsubscribe(other, ch);
    await rxAll.waitEvent('member_removed', ch, { pred: (e) => e.user_id === 'u2', ms: DELAY + 3000 });
    assert.equal(rxAll.count('member_removed', ch, (e) => e.user_id === 'u1'), 1, `one member_removed for u1:\n${rxAll.dump()}`);
    await rxAll.waitEvent('channel_vacated', ch, { ms: DELAY + 3000 });
    rxAll.assertAllValid();
  });

  it('a user leaving and coming back within the delay sends no member_removed nor a second member_added', async () => {
    const ch = 'presence-wh-2';
    const u = { user_id: 'u-back', user_info: {} };
    const stay = { user_id: 'u-stay', user_info: {} };
    const s = await RawClient.established(srv);
    await s.subscribeOk(ch, { sdk, presence: stay });
    const c = await RawClient.established(srv);
    await c.subscribeOk(ch, { sdk, presence: u });
    await rxAll.waitEvent('member_added', ch, { pred: (e) => e.user_id === 'u-back' });
    const from = c.mark();
    unsubscribe(c, ch);
    const a = sdk.authorizeChannel(c.socketId, ch, u);
    c.subscribe(ch, a.auth, a.channel_data);
    await c.waitEvent('pusher_internal:subscription_succeeded', { channel: ch, from });
    // fence: u-stay leaves after u-back's would-be member_removed was held
    unsubscribe(s, ch);
    await rxAll.waitEvent('member_removed', ch, { pred: (e) => e.user_id === 'u-stay', ms: DELAY + 3000 });
    assert.equal(rxAll.count('member_removed', ch, (e) => e.user_id === 'u-back'), 0, rxAll.dump());
    assert.equal(rxAll.count('member_added', ch, (e) => e.user_id === 'u-back'), 1, rxAll.dump());
    rxAll.assertAllValid();
  });

  it('client_event with event, data as sent, socket_id; user_id on presence channels', async () => {
    const ch = 'private-ce-1';
    const a = await RawClient.established(srv);
    const b = await RawClient.established(srv);
    await a.subscribeOk(ch, { sdk });
    await b.subscribeOk(ch, { sdk });
    a.send({ event: 'client-typing', channel: ch, data: { x: 1, text: 'hé "quoted"' } });
    await b.waitEvent('client-typing', { channel: ch });
    const ev = await rxAll.waitEvent('client_event', ch);
    assert.equal(typeof ev.data, 'string', `data is the JSON text the client sent: ${JSON.stringify(ev)}`);
    assert.deepEqual(JSON.parse(ev.data), { x: 1, text: 'hé "quoted"' });
    assert.deepEqual(plain({ ...ev, data: '' }), {
      name: 'client_event',
      channel: ch,
      event: 'client-typing',
      data: '',
      socket_id: a.socketId,
    });
    // private-* endpoint gets it too
    const evPriv = await rxPriv.waitEvent('client_event', ch);
    assert.equal(evPriv.socket_id, a.socketId);

    const pch = 'presence-ce-1';
    const p1 = await RawClient.established(srv);
    const p2 = await RawClient.established(srv);
    await p1.subscribeOk(pch, { sdk, presence: { user_id: 'ce-u1', user_info: {} } });
    await p2.subscribeOk(pch, { sdk, presence: { user_id: 'ce-u2', user_info: {} } });
    // (the server takes an object, or a string holding one, as Reverb does)
    p1.send({ event: 'client-wave', channel: pch, data: { wave: 'hi' } });
    const pev = await rxAll.waitEvent('client_event', pch);
    assert.deepEqual(plain(pev), {
      name: 'client_event',
      channel: pch,
      event: 'client-wave',
      data: '{"wave":"hi"}',
      socket_id: p1.socketId,
      user_id: 'ce-u1',
    });
    rxAll.assertAllValid();
    rxPriv.assertAllValid();
  });

  it('cache_miss when a cache channel has nothing cached', async () => {
    const c = await RawClient.established(srv);
    await c.subscribeOk('cache-wh-1');
    await c.waitEvent('pusher:cache_miss', { channel: 'cache-wh-1' });
    assert.deepEqual(plain(await rxAll.waitEvent('cache_miss', 'cache-wh-1')), {
      name: 'cache_miss',
      channel: 'cache-wh-1',
    });
    rxAll.assertAllValid();
  });

  it('subscription_count follows the channel count', async () => {
    const a = await RawClient.established(srv);
    const b = await RawClient.established(srv);
    await a.subscribeOk('count-wh-1');
    await b.subscribeOk('count-wh-1');
    const two = await rxAll.waitEvent('subscription_count', 'count-wh-1', { pred: (e) => e.subscription_count === 2 });
    assert.deepEqual(plain(two), { name: 'subscription_count', channel: 'count-wh-1', subscription_count: 2 });
    unsubscribe(b, 'count-wh-1');
    const from = rxAll.events.indexOf((e) => e === two) + 1;
    await rxAll.waitEvent('subscription_count', 'count-wh-1', { pred: (e) => e.subscription_count === 1, from });
    rxAll.assertAllValid();
  });

  it('several endpoints: each gets its event types on the channels its filter passes, with its headers', async () => {
    const c = await RawClient.established(srv);
    await c.subscribeOk('plain-f-1');
    await rxAll.waitEvent('channel_occupied', 'plain-f-1');
    await c.subscribeOk('private-f-1', { sdk });
    // both endpoints get the private channel
    assert.deepEqual(plain(await rxPriv.waitEvent('channel_occupied', 'private-f-1')), {
      name: 'channel_occupied',
      channel: 'private-f-1',
    });
    await rxAll.waitEvent('channel_occupied', 'private-f-1');
    // the private-* endpoint got nothing of plain-f-1, emitted before
    assert.equal(rxPriv.count('channel_occupied', 'plain-f-1'), 0, `filtered:\n${rxPriv.dump()}`);
    // and only its event types
    const kinds = new Set(rxPriv.events.items.map((e) => e.name));
    for (const k of kinds) assert.ok(['channel_occupied', 'channel_vacated', 'client_event'].includes(k), `rx private-* got ${k}`);
    for (const e of rxPriv.events.items) assert.ok(e.channel.startsWith('private-'), `rx private-* got ${e.channel}`);
    rxAll.assertAllValid();
    rxPriv.assertAllValid();
  });

  it('an endpoint answering 500 twice gets the same signed body again until it answers 200', async () => {
    const c = await RawClient.established(srv);
    await c.subscribeOk('retry-1');
    const ev = await rxFlaky.waitEvent('channel_occupied', 'retry-1', { ms: 5000 });
    assert.deepEqual(plain(ev), { name: 'channel_occupied', channel: 'retry-1' });
    const reqs = rxFlaky.requests.items;
    assert.equal(reqs.length, 3, `three attempts: ${reqs.map((r) => `${r.status} ${r.rawBody}`).join(' | ')}`);
    assert.deepEqual(
      reqs.map((r) => r.status),
      [500, 500, 200],
    );
    assert.equal(new Set(reqs.map((r) => r.rawBody)).size, 1, 'every attempt sends the same bytes');
    assert.equal(new Set(reqs.map((r) => r.headers['x-pusher-signature'])).size, 1, 'and the same signature');
    // back off: the retries are not immediate
    assert.ok(reqs[1].at - reqs[0].at >= 50, `first retry after ${reqs[1].at - reqs[0].at} ms`);
    rxFlaky.assertAllValid();
  });
});

describe('webhooks with batch = true', () => {
  let srv;
  let rx;
  before(async () => {
    rx = await startReceiver({ label: 'rx batch' });
    srv = await startServer({
      label: 'webhooks-batch',
      config: {
        webhooks: { batch: true, batch_window_ms: 300, max_batch_events: 20, vacate_delay_ms: DELAY, concurrency: 1 },
        apps: [{ ...DEFAULT_APP, webhooks: [{ url: rx.url, event_types: ['channel_occupied'] }] }],
      },
    });
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
    await rx?.close();
  });

  it('events within batch_window_ms of each other come in one signed body', async () => {
    const c = await RawClient.established(srv);
    const names = ['batch-1', 'batch-2', 'batch-3'];
    for (const n of names) c.subscribe(n); // back to back
    await rx.waitEvents('channel_occupied', undefined, 3, { pred: (e) => names.includes(e.channel) });
    const reqs = rx.requests.items.filter((r) => r.body?.events?.some((e) => names.includes(e.channel)));
    assert.equal(reqs.length, 1, `one body: ${reqs.map((r) => r.rawBody).join(' | ')}`);
    assert.deepEqual(
      reqs[0].body.events.map((e) => e.channel).sort(),
      names,
    );
    for (const e of reqs[0].body.events) assert.deepEqual(Object.keys(e), ['name', 'channel']);
    rx.assertAllValid();
  });
});
