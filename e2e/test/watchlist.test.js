// The watchlist_events app setting: a pusher-js client signs in
// (userAuthentication + pusher.signin()) with user_data carrying
// "watchlist": [ids]; pusher-js surfaces pusher_internal:watchlist_events as
// pusher.user.watchlist.bind('online' | 'offline', e => e.user_ids).
//   - right after signin: online for the watched users already online;
//   - online when a watched user's first connection signs in, offline when
//     their last signed-in connection leaves (not for the others);
//   - more than 100 ids: signin still succeeds, and pusher:error 4302.
// Absence is checked with a later fence (another watched user's event, or a
// sendToUser marker) that the server emits after the forbidden one would
// have been.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEFAULT_APP } from '../lib/server.js';
import { pusherClient, sdkFor, disconnectPusher, closeAllClients } from '../lib/clients.js';
import { Recorder } from '../lib/wait.js';
import { signedIn, signedInUser, watcher, watched, waitWatched } from '../lib/signin.js';

const WATCHING = { ...DEFAULT_APP, watchlist_events: true };
const PLAIN = { app_id: 'plain-app', key: 'plain-key', secret: 'plain-secret' };

describe('watchlist events', () => {
  let srv;
  let sdk;
  before(async () => {
    srv = await startServer({ label: 'watchlist', config: { apps: [WATCHING, PLAIN] } });
    sdk = sdkFor(srv);
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  it('online right after signin for the watched users already online, and only them', async () => {
    await signedInUser(srv, 'w1-on-a');
    await signedInUser(srv, 'w1-on-b');
    await signedInUser(srv, 'w1-unwatched');
    const w = await watcher(srv, { id: 'w1', watchlist: ['w1-on-a', 'w1-on-b', 'w1-off'] });
    const ok = await signedIn(w, 'w1');
    assert.deepEqual(JSON.parse(ok.data.user_data).watchlist, ['w1-on-a', 'w1-on-b', 'w1-off']);
    await waitWatched(w, 'online', ['w1-on-a', 'w1-on-b']);
    // fence: a marker sent to the watcher after signin
    const marker = new Recorder('marker');
    w.user.bind('marker', (d) => marker.push(d));
    await sdk.sendToUser('w1', 'marker', {});
    await marker.waitFor(() => true, { what: 'marker for w1' });
    const online = watched(w, 'online');
    assert.deepEqual([...online].sort(), ['w1-on-a', 'w1-on-b'], `online: ${w.watch.dump()}`);
    // the raw message pusher-js got
    const raw = w.messages.filter((m) => m.event === 'pusher_internal:watchlist_events');
    assert.ok(raw.length >= 1, w.messages.dump());
    for (const m of raw) {
      assert.ok(Array.isArray(m.data.events), JSON.stringify(m));
      for (const e of m.data.events) assert.ok(['online', 'offline'].includes(e.name), JSON.stringify(m));
    }
  });

  it('online on a watched user\'s first signed-in connection, offline after their last one', async () => {
    const w = await watcher(srv, { id: 'w2', watchlist: ['w2-u', 'w2-fence'] });
    await signedIn(w, 'w2');
    const m0 = w.watch.mark();
    const u1 = await signedInUser(srv, 'w2-u');
    await waitWatched(w, 'online', ['w2-u'], { from: m0 });
    const u2 = await signedInUser(srv, 'w2-u'); // second connection: no online
    await disconnectPusher(u1); // one connection left: no offline
    // fence: another watched user comes online after both
    const f = await signedInUser(srv, 'w2-fence');
    await waitWatched(w, 'online', ['w2-fence'], { from: m0 });
    assert.deepEqual(watched(w, 'online', m0).filter((id) => id === 'w2-u'), ['w2-u'], `one online for w2-u:\n${w.watch.dump()}`);
    assert.deepEqual(watched(w, 'offline', m0), [], `no offline while w2-u has a connection:\n${w.watch.dump()}`);

    const m1 = w.watch.mark();
    await disconnectPusher(u2);
    const off = await waitWatched(w, 'offline', ['w2-u'], { from: m1 });
    assert.deepEqual(off, ['w2-u']);
    await disconnectPusher(f);
    await waitWatched(w, 'offline', ['w2-fence'], { from: m1 });
    assert.deepEqual(watched(w, 'offline', m1).filter((id) => id === 'w2-u'), ['w2-u'], w.watch.dump());
  });

  it('a watcher that is watched: two users watching each other', async () => {
    const a = await watcher(srv, { id: 'w3-a', watchlist: ['w3-b'] });
    const b = await watcher(srv, { id: 'w3-b', watchlist: ['w3-a'] });
    await signedIn(a, 'w3-a');
    await signedIn(b, 'w3-b');
    await waitWatched(a, 'online', ['w3-b']); // b signed in after a
    await waitWatched(b, 'online', ['w3-a']); // a was online when b signed in
    const m = a.watch.mark();
    await disconnectPusher(b);
    await waitWatched(a, 'offline', ['w3-b'], { from: m });
  });

  it('more than 100 ids: signin succeeds and pusher:error 4302 arrives', async () => {
    const ids = Array.from({ length: 101 }, (_, i) => `w4-${i}`);
    const w = await watcher(srv, { id: 'w4', watchlist: ids });
    await signedIn(w, 'w4');
    const err = await w.messages.waitFor((m) => m.event === 'pusher:error' && m.data?.code === 4302, {
      what: 'pusher:error 4302',
    });
    assert.equal(typeof err.data.message, 'string');
    assert.equal(w.connection.state, 'connected', 'the connection stays open');
    process.stdout.write(`# observed: ${JSON.stringify(err)}\n`);
  });

  it('no watchlist events for an app without watchlist_events', async () => {
    const psdk = sdkFor(srv, PLAIN);
    const u = await pusherClient(srv, { app: PLAIN, sdk: psdk, user: { id: 'w5-u' } });
    await signedIn(u, 'w5-u');
    const w = await watcher(srv, { id: 'w5', watchlist: ['w5-u', 'w5-later'] }, { app: PLAIN, sdk: psdk });
    await signedIn(w, 'w5');
    const later = await pusherClient(srv, { app: PLAIN, sdk: psdk, user: { id: 'w5-later' } });
    await signedIn(later, 'w5-later');
    const marker = new Recorder('marker');
    w.user.bind('marker', (d) => marker.push(d));
    await psdk.sendToUser('w5', 'marker', {});
    await marker.waitFor(() => true, { what: 'marker for w5' });
    assert.equal(w.watch.items.length, 0, w.watch.dump());
    assert.equal(w.messages.filter((m) => m.event === 'pusher_internal:watchlist_events').length, 0);
  });
});
