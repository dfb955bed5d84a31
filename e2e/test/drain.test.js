// Graceful drain as pusher-js sees it: SIGTERM makes the server send
// pusher:error 4200 and close 4200; pusher-js reconnects at once. With
// reuse_port a new server process already listens on the same port, so the
// client lands there and keeps receiving events: a restart without downtime.

import { describe, it, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.js';
import { pusherClient, sdkFor, subscribed, channelEvent, closeAllClients } from '../lib/clients.js';

describe('graceful drain and handover', () => {
  const servers = [];
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    for (const s of servers) await s.stop();
  });

  it('SIGTERM: pusher-js gets 4200, reconnects to the new process on the same port, and is served there', async () => {
    const config = (label) => ({
      server: { reuse_port: true, drain_timeout: 2, pid_dir: '/tmp' },
      apps: [{ app_id: '123456', key: 'reverb-key', secret: 'reverb-secret' }],
    });
    const old = await startServer({ config: config('old'), label: 'old' });
    servers.push(old);
    const pusher = await pusherClient(old);
    const channel = pusher.subscribe('orders');
    await subscribed(pusher, 'orders');
    const firstSocket = pusher.connection.socket_id;

    // The new process binds the same port before the old one drains.
    const fresh = await startServer({ config: config('new'), label: 'new', port: old.port });
    servers.push(fresh);

    const mark = pusher.errors.mark();
    process.kill(old.proc.pid, 'SIGTERM');
    const err = await pusher.errors.waitFor((e) => e?.data?.code === 4200, { from: mark, what: 'pusher:error 4200' });
    assert.equal(err.data.message, 'Server is shutting down; reconnect.');
    const exit = await old.exitPromise;
    assert.equal(exit.code, 0, `old server exit ${JSON.stringify(exit)}\n${old.logs()}`);
    assert.match(old.logs(), /Server stopped/);

    // pusher-js reconnected (to the new process: the old one is gone) and
    // resubscribed by itself.
    await pusher.states.waitFor((s) => s.current === 'connected' && pusher.connection.socket_id !== firstSocket, {
      what: 'reconnected with a new socket id',
      ms: 10_000,
    });
    await subscribed(pusher, 'orders');
    const got = channelEvent(channel, 'after-restart', { ms: 10_000 });
    const sdk = sdkFor(fresh);
    // The subscription may still be on its way: trigger until it arrives.
    let delivered = false;
    got.then(() => (delivered = true), () => {});
    for (let i = 0; i < 50 && !delivered; i++) {
      await sdk.trigger('orders', 'after-restart', { n: i });
      await Promise.race([got.catch(() => {}), new Promise((r) => setTimeout(r, 100))]);
    }
    const ev = await got;
    assert.ok(ev, 'an event from the new process reached the reconnected client');
  });
});
