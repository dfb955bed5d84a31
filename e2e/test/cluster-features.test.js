// Two nodes sharing one Redis (lib/cluster.js), with webhooks, subscription
// counting and watchlist events on:
//   - channel_occupied and channel_vacated are sent once cluster-wide, and
//     member_added / member_removed once per user, however the subscriptions
//     are spread over the nodes;
//   - pusher:subscription_count counts the subscribers of both nodes;
//   - a watcher on A hears of a watched user signing in on B (online) and
//     leaving (offline), and of one already online on B right after signin.
// Each scenario runs several times on fresh names so that races between the
// nodes show up; failures are collected and reported together.
//
// "Exactly once" for webhooks: each node sends its webhooks one at a time, in
// the order it emits them (concurrency = 1). Once the event has arrived, each
// node is made to emit a later event of the same kind on a fence channel
// (for channel_vacated, held back the same delay); when both fences have
// arrived, a duplicate from either node would have arrived before them.

import { describe, it as test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster } from '../lib/cluster.js';
import { DEFAULT_APP } from '../lib/server.js';
import {
  RawClient,
  pusherClient,
  sdkFor,
  subscribed,
  channelEvent,
  closeAllClients,
  disconnectPusher,
} from '../lib/clients.js';
import { startReceiver } from '../lib/webhooks.js';
import { signedIn, signedInUser, watcher, waitWatched, watched } from '../lib/signin.js';

const ITERATIONS = Number(process.env.E2E_CLUSTER_ITERATIONS || 25);
// webhook scenarios wait out the vacate delay twice per iteration
const WEBHOOK_ITERATIONS = Number(process.env.E2E_WEBHOOK_ITERATIONS || Math.min(ITERATIONS, 8));
const DELAY = 300;

async function iterate(t, n, fn) {
  const failures = [];
  for (let i = 0; i < n; i++) {
    try {
      await fn(i);
    } catch (e) {
      const msg = e?.message ?? String(e);
      failures.push(`iteration ${i}: ${failures.length === 0 ? msg : msg.slice(0, 600)}`);
    } finally {
      await closeAllClients();
    }
  }
  t.diagnostic(`${n - failures.length} of ${n} iterations passed`);
  assert.equal(failures.length, 0, `${failures.length} of ${n} iterations failed:\n${failures.join('\n---\n')}`);
}

const unsubscribe = (c, channel) => c.send({ event: 'pusher:unsubscribe', data: { channel } });

describe('two nodes sharing Redis: webhooks, subscription count, watchlist', () => {
  let cl;
  let A;
  let B;
  let sdk;
  let rx;
  let startError;
  before(async () => {
    try {
      rx = await startReceiver({ label: 'rx cluster', headers: { 'X-Tenant': 'c' } });
      cl = await startCluster({
        label: 'features',
        config: {
          webhooks: { vacate_delay_ms: DELAY, concurrency: 1, jitter: -1, initial_backoff_ms: 100, max_backoff_ms: 400 },
          apps: [
            {
              ...DEFAULT_APP,
              subscription_counting: true,
              watchlist_events: true,
              webhooks: [
                {
                  url: rx.url,
                  event_types: ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed'],
                  headers: { 'X-Tenant': 'c' },
                },
              ],
            },
          ],
        },
      });
      [A, B] = cl.nodes;
      sdk = sdkFor(A);
    } catch (e) {
      startError = e;
    }
  });
  const it = (name, fn) =>
    test(name, (t) => {
      if (startError) throw startError;
      return fn(t);
    });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await cl?.stop();
    await rx?.close();
  });

  // Each node vacates a fence channel; resolves once both channel_vacated arrived.
  async function vacatedFences(name) {
    const fa = await RawClient.established(A, { label: 'fence on A' });
    const fb = await RawClient.established(B, { label: 'fence on B' });
    await Promise.all([fa.subscribeOk(`fence-a-${name}`), fb.subscribeOk(`fence-b-${name}`)]);
    unsubscribe(fa, `fence-a-${name}`);
    unsubscribe(fb, `fence-b-${name}`);
    await rx.waitEvent('channel_vacated', `fence-a-${name}`, { ms: DELAY + 5000 });
    await rx.waitEvent('channel_vacated', `fence-b-${name}`, { ms: DELAY + 5000 });
  }

  it('subscribers on A and B at once: one channel_occupied; both leave: one channel_vacated', async (t) => {
    await iterate(t, WEBHOOK_ITERATIONS, async (i) => {
      const ch = `wh-both-${i}`;
      const a = await RawClient.established(A, { label: 'a on A' });
      const b = await RawClient.established(B, { label: 'b on B' });
      await Promise.all([a.subscribeOk(ch), b.subscribeOk(ch)]);
      await rx.waitEvent('channel_occupied', ch);
      if (i % 2 === 0) {
        unsubscribe(a, ch);
        unsubscribe(b, ch);
      } else {
        // one after the other, through different nodes; the second as a disconnect
        unsubscribe(a, ch);
        await b.close();
      }
      const vac = await rx.waitEvent('channel_vacated', ch, { ms: DELAY + 5000 });
      await vacatedFences(ch);
      const mine = rx.events.filter((e) => e.channel === ch).map((e) => e.name);
      assert.deepEqual(mine, ['channel_occupied', 'channel_vacated'], `webhooks for ${ch}:\n${rx.dump(ch)}`);
      assert.deepEqual({ name: vac.name, channel: vac.channel }, { name: 'channel_vacated', channel: ch });
    });
    rx.assertAllValid();
  });

  it('one user on A and B at once: one member_added; after both leave: one member_removed', async (t) => {
    await iterate(t, WEBHOOK_ITERATIONS, async (i) => {
      const ch = `presence-wh-both-${i}`;
      const u = { user_id: `u-${i}`, user_info: { i } };
      const a = await RawClient.established(A, { label: 'u on A' });
      const b = await RawClient.established(B, { label: 'u on B' });
      await Promise.all([a.subscribeOk(ch, { sdk, presence: u }), b.subscribeOk(ch, { sdk: sdkFor(B), presence: u })]);
      const added = await rx.waitEvent('member_added', ch);
      assert.deepEqual(
        { name: added.name, channel: added.channel, user_id: added.user_id },
        { name: 'member_added', channel: ch, user_id: u.user_id },
      );
      unsubscribe(a, ch);
      unsubscribe(b, ch);
      await rx.waitEvent('member_removed', ch, { ms: DELAY + 5000 });
      await rx.waitEvent('channel_vacated', ch, { ms: DELAY + 5000 });
      await vacatedFences(ch);
      const mine = rx.events.filter((e) => e.channel === ch).map((e) => `${e.name}${e.user_id ? ` ${e.user_id}` : ''}`);
      assert.deepEqual(
        mine.filter((x) => x.startsWith('member_')),
        [`member_added ${u.user_id}`, `member_removed ${u.user_id}`],
        `webhooks for ${ch}:\n${rx.dump(ch)}`,
      );
      assert.equal(mine.filter((x) => x === 'channel_occupied').length, 1, rx.dump(ch));
      assert.equal(mine.filter((x) => x === 'channel_vacated').length, 1, rx.dump(ch));
    });
    rx.assertAllValid();
  });

  it('pusher:subscription_count counts the subscribers of both nodes', async (t) => {
    await iterate(t, ITERATIONS, async (i) => {
      const ch = `count-${i}`;
      const pa = await pusherClient(A, { label: 'pa on A' });
      const pb = await pusherClient(B, { label: 'pb on B' });
      const ca = await subscribed(pa, ch);
      const cb = await subscribed(pb, ch);
      const is = (n) => ({ pred: (e) => e.data?.subscription_count === n });
      await channelEvent(ca, 'pusher:subscription_count', is(2));
      await channelEvent(cb, 'pusher:subscription_count', is(2));
      const from = ca.recorder.mark();
      pb.unsubscribe(ch);
      await channelEvent(ca, 'pusher:subscription_count', { ...is(1), from });
    });
  });

  it('watchlist: a watcher on A hears of a watched user signing in on B, and leaving', async (t) => {
    await iterate(t, ITERATIONS, async (i) => {
      const id = `wl-b-${i}`;
      const w = await watcher(A, { id: `watcher-${i}`, watchlist: [id] }, { label: 'watcher on A' });
      await signedIn(w, `watcher-${i}`);
      const m0 = w.watch.mark();
      const u = await signedInUser(B, id, { label: `${id} on B` });
      await waitWatched(w, 'online', [id], { from: m0 });
      const m1 = w.watch.mark();
      await disconnectPusher(u);
      await waitWatched(w, 'offline', [id], { from: m1 });
      assert.deepEqual(watched(w, 'online', m0), [id], w.watch.dump());
    });
  });

  it('watchlist: a user already signed in on B is online for a watcher right after its signin on A', async (t) => {
    await iterate(t, ITERATIONS, async (i) => {
      const id = `wl-pre-${i}`;
      await signedInUser(B, id, { label: `${id} on B` });
      const w = await watcher(A, { id: `watcher-pre-${i}`, watchlist: [id, `wl-nobody-${i}`] }, { label: 'watcher on A' });
      await signedIn(w, `watcher-pre-${i}`);
      const got = await waitWatched(w, 'online', [id]);
      assert.ok(!got.includes(`wl-nobody-${i}`), w.watch.dump());
    });
  });
});
