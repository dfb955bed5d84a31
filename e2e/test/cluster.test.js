// Two nodes sharing one Redis (lib/cluster.js): pusher-js clients on both
// nodes and the pusher SDK pointed at one node or the other, against the
// consistency the server documents for a cluster:
//   - once a client got subscription_succeeded (on any node), a trigger made
//     after it through any node reaches that client;
//   - once a trigger got HTTP 200, a later subscriber to that cache channel
//     on any node gets that event (or a newer one);
//   - once a client got subscription_succeeded on a presence channel, every
//     node's HTTP API lists the user and counts it in user_count; the same for
//     leaving, once member_removed was observed anywhere.
// Each check runs right after the action that must make it true (no retry),
// and each scenario runs E2E_CLUSTER_ITERATIONS times (default 25) on fresh
// channel names, so that a race shows up. Failing iterations are collected and
// reported together ("k of n iterations failed").

import { describe, it as test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster } from '../lib/cluster.js';
import { pusherClient, sdkFor, sdkCall, subscribed, channelEvent, closeAllClients } from '../lib/clients.js';
import { waitUntil } from '../lib/wait.js';

const ITERATIONS = Number(process.env.E2E_CLUSTER_ITERATIONS || 25);

// Runs fn(i) n times, collecting failures instead of stopping at the first,
// and fails with all of them. closeEach closes the iteration's clients.
async function iterate(t, n, fn, { closeEach = true } = {}) {
  const failures = [];
  for (let i = 0; i < n; i++) {
    try {
      await fn(i);
    } catch (e) {
      const msg = e?.message ?? String(e);
      failures.push(`iteration ${i}: ${failures.length === 0 ? msg : msg.slice(0, 600)}`);
    } finally {
      if (closeEach) await closeAllClients();
    }
  }
  t.diagnostic(`${n - failures.length} of ${n} iterations passed`);
  assert.equal(failures.length, 0, `${failures.length} of ${n} iterations failed:\n${failures.join('\n---\n')}`);
}

// GET through the SDK; returns { status, body, json }.
const get = (sdk, path, params) => sdkCall(sdk.get({ path, params }));

// Checks every [what, response, expected JSON body] (status 200) and fails
// once, naming all that differ, so that one wrong answer does not hide others.
function assertResponses(list) {
  const bad = [];
  for (const [what, res, expected] of list) {
    let same = res.status === 200;
    try {
      assert.deepEqual(res.json, expected);
    } catch {
      same = false;
    }
    if (!same) bad.push(`${what}: HTTP ${res.status} ${res.body}, expected 200 ${JSON.stringify(expected)}`);
  }
  assert.equal(bad.length, 0, bad.join('\n'));
}

const eventsNamed = (channel, event, pred = () => true) =>
  channel.recorder.filter((e) => e.event === event && pred(e));

describe('two nodes sharing Redis', () => {
  let cl;
  let A;
  let B;
  let sdkA;
  let sdkB;
  // A cluster that cannot start (no redis-server, say) fails every test
  // with the reason, rather than cancelling them.
  let startError;
  before(async () => {
    try {
      cl = await startCluster({ label: 'cluster' });
      [A, B] = cl.nodes;
      sdkA = sdkFor(A);
      sdkB = sdkFor(B);
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
  });

  it('an event triggered through B right after subscription_succeeded on A reaches the client on A', async (t) => {
    const pa = await pusherClient(A, { label: 'pusher-js on A' });
    await iterate(
      t,
      ITERATIONS,
      async (i) => {
        const name = `ch-${i}`;
        const channel = await subscribed(pa, name);
        const res = await sdkCall(sdkB.trigger(name, 'news', { i, text: `news ${i}` }));
        assert.equal(res.status, 200, res.body);
        const ev = await channelEvent(channel, 'news');
        assert.deepEqual(ev.data, { i, text: `news ${i}` });
        pa.unsubscribe(name);
      },
      { closeEach: false },
    );
  });

  it('socket_id of a client on A given to a trigger through B excludes only that client', async (t) => {
    await iterate(t, ITERATIONS, async (i) => {
      const name = `excl-${i}`;
      const a1 = await pusherClient(A, { label: 'a1 on A' });
      const a2 = await pusherClient(A, { label: 'a2 on A' });
      const b1 = await pusherClient(B, { label: 'b1 on B' });
      const [c1, c2, c3] = await Promise.all([subscribed(a1, name), subscribed(a2, name), subscribed(b1, name)]);
      const r1 = await sdkCall(sdkB.trigger(name, 'not-for-a1', { i }, { socket_id: a1.connection.socket_id }));
      assert.equal(r1.status, 200, r1.body);
      const r2 = await sdkCall(sdkB.trigger(name, 'marker', { i }));
      assert.equal(r2.status, 200, r2.body);
      for (const c of [c2, c3]) {
        assert.deepEqual((await channelEvent(c, 'not-for-a1')).data, { i });
        assert.deepEqual((await channelEvent(c, 'marker')).data, { i });
        const order = c.recorder.items.map((e) => e.event).filter((e) => e !== 'pusher:subscription_succeeded');
        assert.deepEqual(order, ['not-for-a1', 'marker'], `events in order on ${c.recorder.label}`);
      }
      assert.deepEqual((await channelEvent(c1, 'marker')).data, { i });
      assert.equal(eventsNamed(c1, 'not-for-a1').length, 0, `a1 received an excluded event:\n${c1.recorder.dump()}`);
    });
  });

  it('presence: right after subscription_succeeded on B, A lists the user and counts it', async (t) => {
    await iterate(t, ITERATIONS, async (i) => {
      const name = `presence-room-${i}`;
      const pb = await pusherClient(B, { label: 'pusher-js on B', presence: { user_id: `u-${i}`, user_info: { i } } });
      await subscribed(pb, name);
      const [users, info] = await Promise.all([
        get(sdkA, `/channels/${name}/users`),
        get(sdkA, `/channels/${name}`, { info: 'user_count,subscription_count' }),
      ]);
      assertResponses([
        [`GET /channels/${name}/users via A`, users, { users: [{ id: `u-${i}` }] }],
        // subscription_count is answered only for non-presence channels (Reverb's rule)
        [`GET /channels/${name}?info=user_count,subscription_count via A`, info, { occupied: true, user_count: 1 }],
      ]);
    });
  });

  it('presence: once X on A got member_removed for Y (on B), neither node lists Y', async (t) => {
    await iterate(t, ITERATIONS, async (i) => {
      const name = `presence-leave-${i}`;
      const x = { user_id: `x-${i}`, user_info: { role: 'x' } };
      const y = { user_id: `y-${i}`, user_info: { role: 'y' } };
      const px = await pusherClient(A, { label: 'X on A', presence: x });
      const py = await pusherClient(B, { label: 'Y on B', presence: y });
      const cx = await subscribed(px, name);
      await subscribed(py, name);
      await channelEvent(cx, 'pusher:member_added', { pred: (e) => e.data?.id === y.user_id });

      const from = cx.recorder.mark();
      if (i % 2 === 0) py.unsubscribe(name);
      else py.disconnect();
      const removed = await channelEvent(cx, 'pusher:member_removed', { from });
      assert.deepEqual(removed.data, { id: y.user_id, info: y.user_info });

      const [usersA, usersB, infoA, infoB] = await Promise.all([
        get(sdkA, `/channels/${name}/users`),
        get(sdkB, `/channels/${name}/users`),
        get(sdkA, `/channels/${name}`, { info: 'user_count' }),
        get(sdkB, `/channels/${name}`, { info: 'user_count' }),
      ]);
      const how = i % 2 === 0 ? 'unsubscribed' : 'disconnected';
      const users = { users: [{ id: x.user_id }] };
      const info = { occupied: true, user_count: 1 };
      assertResponses([
        [`GET users via A after Y ${how}`, usersA, users],
        [`GET users via B after Y ${how}`, usersB, users],
        [`GET channel info via A after Y ${how}`, infoA, info],
        [`GET channel info via B after Y ${how}`, infoB, info],
      ]);
    });
  });

  it('presence: Y joining on B is announced to X on A exactly once, and Y sees X', async (t) => {
    await iterate(t, ITERATIONS, async (i) => {
      const name = `presence-join-${i}`;
      const x = { user_id: `x-${i}`, user_info: { name: `X ${i}` } };
      const y = { user_id: `y-${i}`, user_info: { name: `Y ${i}` } };
      const px = await pusherClient(A, { label: 'X on A', presence: x });
      const py = await pusherClient(B, { label: 'Y on B', presence: y });
      const cx = await subscribed(px, name);
      const cy = await subscribed(py, name);
      // the members pusher-js built from Y's subscription_succeeded
      const members = {};
      cy.members.each((m) => (members[m.id] = m.info));
      const count = cy.members.count;

      const added = await channelEvent(cx, 'pusher:member_added', { pred: (e) => e.data?.id === y.user_id });
      assert.deepEqual(added.data, { id: y.user_id, info: y.user_info });
      const res = await sdkCall(sdkB.trigger(name, 'marker', { i }));
      assert.equal(res.status, 200, res.body);
      assert.deepEqual((await channelEvent(cx, 'marker')).data, { i });
      const seen = cx.recorder.items.map((e) => `${e.event}${e.data?.id ? ` ${e.data.id}` : ''}`);
      assert.deepEqual(
        seen,
        ['pusher:subscription_succeeded', `pusher:member_added ${y.user_id}`, 'marker'],
        `X's events up to the marker`,
      );
      assert.deepEqual(
        { count, members },
        { count: 2, members: { [x.user_id]: x.user_info, [y.user_id]: y.user_info } },
        `Y's subscription_succeeded members (X subscribed on A before Y subscribed on B)`,
      );
    });
  });

  it('cache channel: after HTTP 200 from B, a new subscriber on A gets that event first', async (t) => {
    let pa = await pusherClient(A, { label: 'pusher-js on A' });
    // Subscribes and returns the first event after subscription_succeeded.
    const firstAfterSubscribe = async (pusher, name) => {
      const channel = await subscribed(pusher, name, { wait: false });
      const first = await channel.recorder.waitFor((e) => e.event !== 'pusher:subscription_succeeded', {
        what: `the first event after subscription_succeeded on ${name}`,
      });
      const iOk = channel.recorder.indexOf((e) => e.event === 'pusher:subscription_succeeded');
      const iFirst = channel.recorder.items.indexOf(first);
      assert.ok(iOk !== -1 && iOk < iFirst, `subscription_succeeded first:\n${channel.recorder.dump()}`);
      return { event: first.event, data: first.data };
    };

    await iterate(
      t,
      ITERATIONS,
      async (i) => {
        const name = `cache-c-${i}`;
        const res = await sdkCall(sdkB.trigger(name, 'price', { n: i }));
        assert.equal(res.status, 200, res.body);
        assert.deepEqual(await firstAfterSubscribe(pa, name), { event: 'price', data: { n: i } });
        pa.unsubscribe(name);
        if (i % 40 === 39) {
          // Stay under the server's subscriptions-per-second limit (100 a
          // connection): a fresh connection every 40 subscriptions.
          pa.disconnect();
          pa = await pusherClient(A, { label: 'pusher-js on A' });
        }
      },
      { closeEach: false },
    );

    // private-cache, once
    const res = await sdkCall(sdkB.trigger('private-cache-c', 'price', { n: 'private' }));
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(await firstAfterSubscribe(pa, 'private-cache-c'), { event: 'price', data: { n: 'private' } });

    // never triggered: cache_miss on either node
    const pb = await pusherClient(B, { label: 'pusher-js on B' });
    for (const [p, node] of [
      [pa, 'A'],
      [pb, 'B'],
    ]) {
      const first = await firstAfterSubscribe(p, `cache-never-${node}`);
      assert.equal(first.event, 'pusher:cache_miss', `on node ${node}: ${JSON.stringify(first)}`);
    }
  });

  it('counts: subscription_count and /connections over both nodes right after subscription_succeeded', async (t) => {
    const PER_NODE = 4;
    const onA = [];
    const onB = [];
    for (let k = 0; k < PER_NODE; k++) {
      onA.push(await pusherClient(A, { label: `count a${k}` }));
      onB.push(await pusherClient(B, { label: `count b${k}` }));
    }
    // Clients of the earlier tests and iterations have left (their closes and
    // unsubscribes travel on other sockets): wait until no node counts them.
    // A precondition, not a check.
    const settled = () =>
      waitUntil(
        async () => {
          const [conns, chans] = await Promise.all([
            get(sdkA, '/connections'),
            get(sdkA, '/channels', { filter_by_prefix: 'count-' }),
          ]);
          return conns.json?.connections === 0 && chans.json && Object.keys(chans.json.channels).length === 0;
        },
        { what: 'no subscribed connection left from earlier tests and iterations' },
      );
    await iterate(
      t,
      ITERATIONS,
      async (i) => {
        const name = `count-${i}`;
        await settled();
        // 1..4 clients on A and 1..4 on B, a different split each time
        const nA = 1 + (i % PER_NODE);
        const nB = 1 + (Math.floor(i / PER_NODE) % PER_NODE);
        const clients = [...onA.slice(0, nA), ...onB.slice(0, nB)];
        const n = clients.length;
        try {
          await Promise.all(clients.map((p) => subscribed(p, name)));
          const results = await Promise.all(
            [
              ['A', sdkA],
              ['B', sdkB],
            ].flatMap(([node, sdk]) => [
              get(sdk, '/channels', { filter_by_prefix: 'count-', info: 'subscription_count' }).then((r) => [
                `GET /channels via ${node}`,
                r,
                { channels: { [name]: { subscription_count: n } } },
              ]),
              get(sdk, `/channels/${name}`, { info: 'subscription_count' }).then((r) => [
                `GET /channels/${name} via ${node}`,
                r,
                { occupied: true, subscription_count: n },
              ]),
              get(sdk, '/connections').then((r) => [`GET /connections via ${node}`, r, { connections: n }]),
            ]),
          );
          assertResponses(results.map(([what, res, expected]) => [`${what} (${n} subscribed)`, res, expected]));
        } finally {
          for (const p of clients) p.unsubscribe(name);
        }
      },
      { closeEach: false },
    );
  });
});
