// A two-node cluster for the end-to-end tests: a real redis-server on a free
// loopback port (no persistence), and two server processes sharing it with
// scaling enabled and the same app credentials.
//
//   const cl = await startCluster({ label: 'cluster' });
//   cl.nodes[0], cl.nodes[1]   servers as returned by startServer
//   await cl.stop();           stops both nodes, then Redis, by PID
//
// startCluster returns once each node has observed a subscription held on
// the other one (GET /channels/{probe} through one node counts a client
// subscribed on the other), so cross-node queries and events work from the
// first test on.
//
//   REDIS_SERVER_BIN   path of redis-server (default: found on PATH)

import { spawnLogged } from './proc.js';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startServer, freePort, HOST, DEFAULT_APP } from './server.js';
import { RawClient, sdkFor, sdkCall } from './clients.js';
import { waitUntil } from './wait.js';


function findOnPath(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {}
  }
  return null;
}

export function redisServerBin() {
  const bin = process.env.REDIS_SERVER_BIN || findOnPath('redis-server');
  if (!bin || !fs.existsSync(bin)) {
    throw new Error(
      'redis-server not found (PATH or REDIS_SERVER_BIN): the two-node tests need a real Redis. ' +
        '`make test` installs it (its `deps` step installs the redis-server package when it is missing).',
    );
  }
  return bin;
}

// Sends PING in the inline RESP form; resolves true on "+PONG".
function ping(port, ms = 500) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    let buf = '';
    const done = (ok) => {
      clearTimeout(t);
      sock.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), ms);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    sock.on('error', () => done(false));
  });
}

// Starts redis-server on a free loopback port and waits until it answers
// PING (10 s deadline). stop() ends it by PID.
export async function startRedis({ label = 'redis' } = {}) {
  const bin = redisServerBin();
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reverb-e2e-redis-'));
  const args = ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir];
  const child = spawnLogged(bin, args, {});
  const { proc } = child;

  const redis = {
    label: `${label}:${port}`,
    host: HOST,
    port,
    proc,
    logs: child.logs,
    exited: child.exited,
    async stop() {
      await child.terminate();
      fs.rmSync(dir, { recursive: true, force: true });
      if (process.env.E2E_SERVER_LOGS) process.stderr.write(`--- ${redis.label} logs ---\n${child.logs()}\n`);
    },
  };

  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && !child.exited()) {
    if (await ping(port)) return redis;
    await new Promise((r) => setTimeout(r, 50));
  }
  await redis.stop();
  throw new Error(
    `redis-server did not answer PING within 10 s (${child.exited() ? `exited ${JSON.stringify(child.exited())}` : 'no answer'})\n` +
      `command: ${bin} ${args.map((a) => (a === '' ? "''" : a)).join(' ')}\noutput:\n${child.logs()}`,
  );
}

// Waits until `via` counts a subscription held by a client connected to
// `on`: then `via` knows `on` as a live node and both are subscribed to Redis.
async function waitSees(via, on, probe, ms) {
  const client = await RawClient.established(on, { label: `probe on ${on.label}` });
  try {
    await client.subscribeOk(probe);
    const sdk = sdkFor(via);
    await waitUntil(
      async () => {
        const r = await sdkCall(sdk.get({ path: `/channels/${probe}`, params: { info: 'subscription_count' } }));
        return r.status === 200 && r.json?.occupied === true && r.json.subscription_count === 1 && r;
      },
      { ms, interval: 50, what: `${via.label} to count the subscription to ${probe} held on ${on.label}` },
    );
  } finally {
    await client.close();
  }
}

// Starts Redis and `count` nodes sharing it (same app, scaling on) and waits
// until every node sees every other one (10 s deadline).
// `config` (optional): a reverb.toml for every node (see startServer), e.g.
// for webhooks or app settings; its first app should use DEFAULT_APP's
// credentials, since the env given to each node names them.
export async function startCluster({ count = 2, env = {}, label = 'node', config = null } = {}) {
  const redis = await startRedis();
  const nodes = [];
  const cluster = {
    redis,
    nodes,
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      await redis.stop();
    },
  };
  try {
    for (let i = 0; i < count; i++) {
      nodes.push(
        await startServer({
          label: `${label}-${String.fromCharCode(65 + i)}`,
          config,
          env: {
            REVERB_APP_ID: DEFAULT_APP.app_id,
            REVERB_APP_KEY: DEFAULT_APP.key,
            REVERB_APP_SECRET: DEFAULT_APP.secret,
            REVERB_SCALING_ENABLED: 'true',
            REDIS_HOST: HOST,
            REDIS_PORT: String(redis.port),
            ...env,
          },
        }),
      );
    }
    for (const [i, on] of nodes.entries()) {
      for (const [j, via] of nodes.entries()) {
        if (i !== j) await waitSees(via, on, `e2e-probe-${i}-${j}`, 10_000);
      }
    }
  } catch (e) {
    await cluster.stop();
    if (e instanceof Error) e.message += `\n--- ${redis.label} output ---\n${redis.logs().slice(-2000)}`;
    throw e;
  }
  return cluster;
}
