// pusher-js user authentication helpers: signing in and recording the
// watchlist events pusher-js surfaces (pusher.user.watchlist.bind('online'
// / 'offline', e => e.user_ids)).

import { pusherClient } from './clients.js';
import { Recorder, DEFAULT_WAIT_MS } from './wait.js';

// Signs a pusher-js client in and waits for pusher:signin_success and the
// subscription of its #server-to-user-{id} channel; returns the
// signin_success message.
export async function signedIn(pusher, id, { ms = DEFAULT_WAIT_MS } = {}) {
  const from = pusher.messages.mark();
  pusher.signin();
  const ok = await pusher.messages.waitFor((m) => m.event === 'pusher:signin_success', {
    from,
    ms,
    what: 'pusher:signin_success',
  });
  await pusher.messages.waitFor(
    (m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === `#server-to-user-${id}`,
    { from, ms, what: `subscription_succeeded for #server-to-user-${id}` },
  );
  return ok;
}

// A pusher-js client whose user data is `user` ({ id, watchlist, ... }),
// with .watch, a Recorder of { name: 'online'|'offline', user_ids } as
// pusher-js's watchlist facade emits them, bound before signin.
export async function watcher(server, user, { label, ...opts } = {}) {
  const p = await pusherClient(server, { user, label: label || `user ${user.id}`, ...opts });
  p.watch = new Recorder(`${label || `user ${user.id}`} watchlist`);
  p.user.watchlist.bind('online', (e) => p.watch.push({ name: 'online', user_ids: e.user_ids }));
  p.user.watchlist.bind('offline', (e) => p.watch.push({ name: 'offline', user_ids: e.user_ids }));
  return p;
}

// A signed-in pusher-js client of user `id` (no watchlist).
export async function signedInUser(server, id, opts = {}) {
  const p = await pusherClient(server, { user: { id }, label: `user ${id}`, ...opts });
  await signedIn(p, id);
  return p;
}


// Every id the watchlist events of that name named so far (from index from).
export function watched(p, name, from = 0) {
  return p.watch.filter((e) => e.name === name, from).flatMap((e) => e.user_ids);
}

// Waits until the watchlist events of that name (from index from) have named
// every one of ids, over one or several events; returns the ids named.
export async function waitWatched(p, name, ids, { from = 0, ms = DEFAULT_WAIT_MS } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = watched(p, name, from);
    if (ids.every((id) => got.includes(id))) return got;
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new Error(
        `timed out after ${ms} ms waiting for watchlist ${name} naming ${JSON.stringify(ids)} on ${p.watch.label}; ` +
          `received so far:\n${p.watch.dump()}\nmessages:\n${p.messages.dump()}`,
      );
    }
    await p.watch.waitFor(() => true, { from: p.watch.mark(), ms: left }).catch(() => {});
  }
}
