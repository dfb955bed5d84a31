// User authentication (pusher:signin), server-to-user events and
// terminate_connections.

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
  closeAllClients,
} from '../lib/clients.js';
import { Recorder } from '../lib/wait.js';

// Signs in a pusher-js client and waits until its #server-to-user-{id}
// channel is subscribed (pusher-js subscribes it after signin_success).
async function signedIn(pusher, id) {
  pusher.signin();
  const ok = await pusher.messages.waitFor((m) => m.event === 'pusher:signin_success', {
    what: 'pusher:signin_success',
  });
  await pusher.messages.waitFor(
    (m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === `#server-to-user-${id}`,
    { what: `subscription_succeeded for #server-to-user-${id}` },
  );
  return ok;
}

function recordUser(pusher, event) {
  const rec = new Recorder(`user events ${event}`);
  pusher.user.bind(event, (data) => rec.push(data));
  return rec;
}

describe('users', () => {
  let srv;
  let sdk;
  before(async () => {
    srv = await startServer({ label: 'users' });
    sdk = sdkFor(srv);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  it('raw pusher:signin with an SDK-signed auth gets pusher:signin_success', async () => {
    const c = await RawClient.established(srv);
    const signed = sdk.authenticateUser(c.socketId, { id: '42', user_info: { name: 'Zed' } });
    c.send({ event: 'pusher:signin', data: signed });
    const ok = await c.waitEvent('pusher:signin_success');
    assert.equal(typeof ok.msg.data, 'string', 'data is a JSON string');
    assert.equal(ok.data.user_data, signed.user_data);
    assert.equal(ok.channel, undefined);
  });

  it('raw pusher:signin with a bad signature is refused', async () => {
    const c = await RawClient.established(srv);
    const signed = sdk.authenticateUser(c.socketId, { id: '42' });
    c.send({ event: 'pusher:signin', data: { ...signed, auth: `${srv.app.key}:${'0'.repeat(64)}` } });
    const err = await c.waitError();
    assert.equal(err.data.code, 4009, err.raw);
    assert.equal(c.events('pusher:signin_success').length, 0);
    process.stdout.write(`# observed bad signin: ${err.raw}\n`);
  });

  it('pusher-js signin(); sendToUser reaches every connection of that user only', async () => {
    const u42a = await pusherClient(srv, { user: { id: '42', user_info: { name: 'Zed' } } });
    const u42b = await pusherClient(srv, { user: { id: '42', user_info: { name: 'Zed' } } });
    const u43 = await pusherClient(srv, { user: { id: '43' } });
    const ok = await signedIn(u42a, '42');
    assert.deepEqual(JSON.parse(ok.data.user_data), { id: '42', user_info: { name: 'Zed' } });
    await signedIn(u42b, '42');
    await signedIn(u43, '43');
    const recA = recordUser(u42a, 'notice');
    const recB = recordUser(u42b, 'notice');
    const rec43 = recordUser(u43, 'notice');
    const marker43 = recordUser(u43, 'marker');

    const res = await sdkCall(sdk.sendToUser('42', 'notice', { text: 'hello 42' }));
    assert.equal(res.status, 200, res.body);
    assert.deepEqual((await recA.waitFor(() => true, { what: 'notice on 42a' })), { text: 'hello 42' });
    assert.deepEqual((await recB.waitFor(() => true, { what: 'notice on 42b' })), { text: 'hello 42' });
    await sdk.sendToUser('43', 'marker', {});
    await marker43.waitFor(() => true, { what: 'marker on 43' });
    assert.equal(rec43.items.length, 0, 'user 43 must not receive user 42\'s event');
  });

  it('terminateUserConnections closes every connection of the user with 4009; others stay connected', async () => {
    // user 77: one signed-in pusher-js client, one raw presence member (not signed in)
    const p77 = await pusherClient(srv, { user: { id: '77' } });
    await signedIn(p77, '77');
    const raw77 = await RawClient.established(srv);
    await raw77.subscribeOk('presence-term', { sdk, presence: { user_id: '77', user_info: {} } });
    // user 78 stays
    const p78 = await pusherClient(srv, { user: { id: '78' }, presence: { user_id: '78', user_info: {} } });
    await signedIn(p78, '78');
    const ch78 = await subscribed(p78, 'presence-term');
    const raw78 = await RawClient.established(srv);
    await raw78.subscribeOk('presence-term', { sdk, presence: { user_id: '78', user_info: {} } });

    const res = await sdkCall(sdk.terminateUserConnections('77'));
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(res.json, {});

    const closed = await raw77.waitClosed();
    assert.equal(closed.code, 4009, `raw presence member of user 77 closed with ${JSON.stringify(closed)}`);

    const err = await p77.errors.waitFor(
      (e) => (e.data?.code ?? e.error?.data?.code) === 4009,
      { what: 'pusher-js error with code 4009' },
    );
    assert.ok(err);
    await p77.states.waitFor((s) => s.current === 'disconnected', { what: 'pusher-js 77 disconnected' });

    // user 77 leaves the presence channel
    const removed = await channelEvent(ch78, 'pusher:member_removed');
    assert.equal(removed.data.id, '77');

    // others are still served
    await sdk.trigger('presence-term', 'still-here', { ok: 1 });
    assert.deepEqual((await channelEvent(ch78, 'still-here')).data, { ok: 1 });
    await raw78.waitEvent('still-here');
    assert.ok(raw78.isOpen);
    assert.equal(p78.connection.state, 'connected');
    // pusher-js did not reconnect after 4009
    assert.equal(p77.connection.state, 'disconnected');
    assert.equal(
      p77.states.filter((s) => s.current === 'connected').length,
      1,
      `pusher-js must not reconnect: ${p77.states.dump()}`,
    );
  });
});
