// Presence semantics: member_added once per user, member_removed when the
// user's last connection leaves; pusher-js members and Echo here/joining/leaving.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.js';
import {
  RawClient,
  pusherClient,
  echoClient,
  echoSubscribed,
  sdkFor,
  sdkCall,
  subscribed,
  channelEvent,
  closeAllClients,
} from '../lib/clients.js';
import { waitUntil, Recorder } from '../lib/wait.js';

describe('presence', () => {
  let srv;
  let sdk;
  before(async () => {
    srv = await startServer({ label: 'presence' });
    sdk = sdkFor(srv);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  const connectionsNow = async () => (await sdkCall(sdk.get({ path: '/connections' }))).json?.connections;

  it('member_added once per user, member_removed when the last connection of the user leaves (wire)', async () => {
    const ch = 'presence-room';
    const ann = await RawClient.established(srv);
    await ann.subscribeOk(ch, { sdk, presence: { user_id: '1', user_info: { name: 'Ann' } } });

    const bob1 = await RawClient.established(srv);
    await bob1.subscribeOk(ch, { sdk, presence: { user_id: '2', user_info: { name: 'Bob' } } });
    const added = await ann.waitEvent('pusher_internal:member_added', { channel: ch });
    assert.equal(
      added.raw,
      '{"event":"pusher_internal:member_added","data":"{\\"user_id\\":\\"2\\",\\"user_info\\":{\\"name\\":\\"Bob\\"}}","channel":"presence-room"}',
    );

    // Bob's second connection: nothing for Ann.
    const bob2 = await RawClient.established(srv);
    const ok2 = await bob2.subscribeOk(ch, { sdk, presence: { user_id: '2', user_info: { name: 'Bob' } } });
    assert.equal(ok2.data.presence.count, 2);
    await sdk.trigger(ch, 'marker-1', {});
    await ann.waitEvent('marker-1');
    assert.equal(
      ann.events('pusher_internal:member_added').length,
      1,
      `a second connection of user 2 must not announce a member again:\n${ann.messages.dump()}`,
    );
    // bob1 must not learn that "user 2 joined" either
    await bob1.waitEvent('marker-1');
    assert.equal(bob1.events('pusher_internal:member_added').length, 0, bob1.messages.dump());

    // Bob's second connection leaves: user 2 still present, nothing for Ann.
    const before = await connectionsNow();
    await bob2.close();
    await waitUntil(async () => (await connectionsNow()) === before - 1, {
      what: `connections to drop from ${before} to ${before - 1}`,
    });
    const users = await sdkCall(sdk.get({ path: `/channels/${ch}/users` }));
    assert.deepEqual(users.json, { users: [{ id: '1' }, { id: '2' }] });
    await sdk.trigger(ch, 'marker-2', {});
    await ann.waitEvent('marker-2');
    assert.equal(ann.events('pusher_internal:member_removed').length, 0, ann.messages.dump());

    // Bob's last connection leaves: member_removed.
    await bob1.close();
    const removed = await ann.waitEvent('pusher_internal:member_removed', { channel: ch });
    assert.equal(removed.raw, '{"event":"pusher_internal:member_removed","data":"{\\"user_id\\":\\"2\\"}","channel":"presence-room"}');
    const after = await sdkCall(sdk.get({ path: `/channels/${ch}/users` }));
    assert.deepEqual(after.json, { users: [{ id: '1' }] });
  });

  it('unsubscribing (not disconnecting) also removes the member', async () => {
    const ch = 'presence-unsub';
    const a = await RawClient.established(srv);
    await a.subscribeOk(ch, { sdk, presence: { user_id: 'a' } });
    const b = await RawClient.established(srv);
    await b.subscribeOk(ch, { sdk, presence: { user_id: 'b' } });
    await a.waitEvent('pusher_internal:member_added');
    b.send({ event: 'pusher:unsubscribe', data: { channel: ch } });
    const removed = await a.waitEvent('pusher_internal:member_removed');
    assert.deepEqual(removed.data, { user_id: 'b' });
    assert.ok(b.isOpen);
  });

  it('pusher-js: members, pusher:member_added and pusher:member_removed', async () => {
    const ch = 'presence-pjs-room';
    const p1 = await pusherClient(srv, { presence: { user_id: '100', user_info: { name: 'Hundred' } } });
    const c1 = await subscribed(p1, ch);
    assert.equal(c1.members.count, 1);

    const p2 = await pusherClient(srv, { presence: { user_id: '200', user_info: { name: 'Two Hundred' } } });
    const c2 = await subscribed(p2, ch);
    assert.equal(c2.members.count, 2);
    const added = await channelEvent(c1, 'pusher:member_added');
    assert.deepEqual(added.data, { id: '200', info: { name: 'Two Hundred' } });
    assert.equal(c1.members.count, 2);

    // a second pusher-js client of user 200
    const p3 = await pusherClient(srv, { presence: { user_id: '200', user_info: { name: 'Two Hundred' } } });
    await subscribed(p3, ch);
    await sdk.trigger(ch, 'marker', {});
    await channelEvent(c1, 'marker');
    assert.equal(c1.recorder.filter((e) => e.event === 'pusher:member_added').length, 1);

    p2.disconnect();
    p3.disconnect();
    const removed = await channelEvent(c1, 'pusher:member_removed');
    assert.deepEqual(removed.data, { id: '200', info: { name: 'Two Hundred' } });
    assert.equal(c1.members.count, 1);
    assert.equal(c1.recorder.filter((e) => e.event === 'pusher:member_removed').length, 1);
  });

  it('Laravel Echo: join().here().joining().leaving()', async () => {
    const log = new Recorder('echo presence callbacks');
    const e1 = await echoClient(srv, { presence: { user_id: '1', user_info: { id: 1, name: 'Ann' } } });
    const room1 = e1
      .join('chat.1')
      .here((users) => log.push({ who: 'e1', kind: 'here', users }))
      .joining((user) => log.push({ who: 'e1', kind: 'joining', user }))
      .leaving((user) => log.push({ who: 'e1', kind: 'leaving', user }));
    const here1 = await log.waitFor((x) => x.who === 'e1' && x.kind === 'here', { what: 'e1 here()' });
    assert.deepEqual(here1.users, [{ id: 1, name: 'Ann' }]);
    assert.equal(room1.name, 'presence-chat.1');

    const e2 = await echoClient(srv, { presence: { user_id: '2', user_info: { id: 2, name: 'Bob' } } });
    e2.join('chat.1').here((users) => log.push({ who: 'e2', kind: 'here', users }));
    const here2 = await log.waitFor((x) => x.who === 'e2' && x.kind === 'here', { what: 'e2 here()' });
    assert.deepEqual(
      [...here2.users].sort((a, b) => a.id - b.id),
      [
        { id: 1, name: 'Ann' },
        { id: 2, name: 'Bob' },
      ],
    );
    const joining = await log.waitFor((x) => x.who === 'e1' && x.kind === 'joining', { what: 'e1 joining()' });
    assert.deepEqual(joining.user, { id: 2, name: 'Bob' });

    e2.leave('chat.1');
    const leaving = await log.waitFor((x) => x.who === 'e1' && x.kind === 'leaving', { what: 'e1 leaving()' });
    assert.deepEqual(leaving.user, { id: 2, name: 'Bob' });
    await echoSubscribed(room1);
  });
});
