// Several apps in one server: events, presence and counts stay inside their
// app; one app's secret cannot sign for another.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.js';
import {
  RawClient,
  pusherClient,
  sdkFor,
  sdkCall,
  subscribed,
  channelEvent,
  signedRequest,
  closeAllClients,
} from '../lib/clients.js';
import { waitUntil } from '../lib/wait.js';

const A = { app_id: '3001', key: 'app-a-key', secret: 'app-a-secret' };
const B = { app_id: '3002', key: 'app-b-key', secret: 'app-b-secret' };

describe('multiple apps', () => {
  let srv;
  let sdkA;
  let sdkB;
  before(async () => {
    srv = await startServer({ label: 'multi-app', config: { apps: [A, B] } });
    sdkA = sdkFor(srv, A);
    sdkB = sdkFor(srv, B);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  it("an event for app A never reaches app B's subscriber of the same channel", async () => {
    const a = await RawClient.established(srv, { key: A.key });
    await a.subscribeOk('shared');
    const b = await RawClient.established(srv, { key: B.key });
    await b.subscribeOk('shared');
    await sdkA.trigger('shared', 'for-a', { app: 'A' });
    await a.waitEvent('for-a');
    await sdkB.trigger('shared', 'for-b', { app: 'B' });
    await b.waitEvent('for-b');
    // ordering markers per app
    await sdkA.trigger('shared', 'marker-a', {});
    await a.waitEvent('marker-a');
    await sdkB.trigger('shared', 'marker-b', {});
    await b.waitEvent('marker-b');
    assert.equal(b.events('for-a').length, 0, `B got A's event:\n${b.messages.dump()}`);
    assert.equal(a.events('for-b').length, 0, `A got B's event:\n${a.messages.dump()}`);
  });

  it('pusher-js clients of two apps on the same private channel name are isolated', async () => {
    const pa = await pusherClient(srv, { app: A });
    const pb = await pusherClient(srv, { app: B });
    const ca = await subscribed(pa, 'private-same');
    const cb = await subscribed(pb, 'private-same');
    await sdkA.trigger('private-same', 'only-a', { n: 1 });
    assert.deepEqual((await channelEvent(ca, 'only-a')).data, { n: 1 });
    await sdkB.trigger('private-same', 'marker', {});
    await channelEvent(cb, 'marker');
    assert.equal(cb.recorder.filter((e) => e.event === 'only-a').length, 0);
  });

  it("a private channel signed with app A's secret is refused on app B", async () => {
    const b = await RawClient.established(srv, { key: B.key });
    const a = sdkA.authorizeChannel(b.socketId, 'private-cross');
    b.subscribe('private-cross', `${B.key}:${a.auth.split(':')[1]}`);
    const err = await b.waitError();
    assert.deepEqual(err.data, { code: 4009, message: 'Connection is unauthorized' }, err.raw);
  });

  it("app A's secret cannot sign HTTP requests for app B (401)", async () => {
    const b = await RawClient.established(srv, { key: B.key });
    await b.subscribeOk('victim');
    const forged = sdkFor(srv, { app_id: B.app_id, key: B.key, secret: A.secret });
    const res = await sdkCall(forged.trigger('victim', 'forged', {}));
    assert.equal(res.status, 401, res.body);
    const forged2 = sdkFor(srv, { app_id: B.app_id, key: A.key, secret: A.secret });
    const res2 = await sdkCall(forged2.trigger('victim', 'forged', {}));
    assert.equal(res2.status, 401, res2.body);
    const res3 = await signedRequest(srv, { path: `/apps/${B.app_id}/channels`, app: B, secret: A.secret });
    assert.equal(res3.status, 401, res3.body);
    await sdkB.trigger('victim', 'marker', {});
    await b.waitEvent('marker');
    assert.equal(b.events('forged').length, 0);
  });

  it('presence members, channel listings and connection counts are per app', async () => {
    const a1 = await RawClient.established(srv, { key: A.key });
    await a1.subscribeOk('presence-both', { sdk: sdkA, presence: { user_id: 'a1' } });
    const b1 = await RawClient.established(srv, { key: B.key });
    const okB = await b1.subscribeOk('presence-both', { sdk: sdkB, presence: { user_id: 'b1' } });
    assert.deepEqual(okB.data.presence.ids.map(String), ['b1'], `B sees only its own members: ${okB.raw}`);
    await sdkA.trigger('presence-both', 'marker', {});
    await a1.waitEvent('marker');
    assert.equal(a1.events('pusher_internal:member_added').length, 0, a1.messages.dump());

    const usersA = await sdkCall(sdkA.get({ path: '/channels/presence-both/users' }));
    assert.deepEqual(usersA.json, { users: [{ id: 'a1' }] });
    const usersB = await sdkCall(sdkB.get({ path: '/channels/presence-both/users' }));
    assert.deepEqual(usersB.json, { users: [{ id: 'b1' }] });

    const onlyA = await RawClient.established(srv, { key: A.key });
    await onlyA.subscribeOk('only-in-a');
    const listB = await sdkCall(sdkB.get({ path: '/channels' }));
    assert.ok(!('only-in-a' in listB.json.channels), `B lists A's channel: ${listB.body}`);
    const listA = await sdkCall(sdkA.get({ path: '/channels' }));
    assert.ok('only-in-a' in listA.json.channels, listA.body);

    // earlier tests' sockets may still be closing: wait for the exact counts
    const counts = async () => [
      (await sdkCall(sdkA.get({ path: '/connections' }))).json,
      (await sdkCall(sdkB.get({ path: '/connections' }))).json,
    ];
    const got = await waitUntil(
      async () => {
        const [ca, cb] = await counts();
        return ca?.connections === 2 && cb?.connections === 1 && [ca, cb];
      },
      { what: 'A {"connections":2} and B {"connections":1}' },
    );
    assert.deepEqual(got, [{ connections: 2 }, { connections: 1 }]);
  });
});
