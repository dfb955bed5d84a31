// Starts the real server binary on a free loopback port and stops it by PID.
//
//   REVERB_BIN   path of the binary (default ../bin/reverb relative to e2e/)
//
// Two ways to configure it:
//   startServer({ env: { REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM: 'none' } })
//       single app from env (REVERB_APP_ID/KEY/SECRET default to DEFAULT_APP)
//   startServer({ config: { server: {...}, limits: {...}, apps: [{...}] } })
//       a temporary reverb.toml passed with --config
//   startServer({ tls: { cert, key, ca } })
//       the same over TLS ([server.tls]; https:// and wss:// bases)

import { spawnLogged } from './proc.js';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverLogSources } from './wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = path.resolve(here, '..');
export const REVERB_BIN = path.resolve(E2E_DIR, process.env.REVERB_BIN || '../bin/reverb');

export const HOST = '127.0.0.1';

export const DEFAULT_APP = Object.freeze({
  app_id: '123456',
  key: 'reverb-key',
  secret: 'reverb-secret',
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// TOML keys are written bare when they can be (X-Tenant), quoted otherwise.
function tomlKey(k) {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k);
}

function tomlValue(v) {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  // plain objects inside a table's values become inline tables ({ a = "b" })
  if (v && typeof v === 'object') {
    return `{ ${Object.entries(v)
      .map(([k, x]) => `${tomlKey(k)} = ${tomlValue(x)}`)
      .join(', ')} }`;
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new Error(`cannot encode ${typeof v} as TOML`);
}

// Writes a table's scalar and array values; object values are sub-tables
// written by the caller, unless `inline` is set (then they become inline
// tables, as [[apps.webhooks]] headers and filter). Arrays of objects
// (an app's `webhooks`) are always the caller's.
function tomlTable(header, obj, lines, { inline = false } = {}) {
  lines.push(header);
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || v === null) continue;
    if (typeof v === 'object' && !Array.isArray(v) && !inline) continue;
    if (Array.isArray(v) && v.some((x) => x && typeof x === 'object')) continue;
    lines.push(`${tomlKey(k)} = ${tomlValue(v)}`);
  }
  lines.push('');
}

// cfg: { server, limits, webhooks, scaling: { ..., redis: {...} },
//        apps: [{ ..., rate_limiting: {...}, webhooks: [{ url, event_types, headers, filter }] }] }
export function toToml(cfg) {
  const lines = [];
  if (cfg.server) tomlTable('[server]', cfg.server, lines);
  if (cfg.server?.tls) tomlTable('[server.tls]', cfg.server.tls, lines);
  if (cfg.limits) tomlTable('[limits]', cfg.limits, lines);
  if (cfg.webhooks) tomlTable('[webhooks]', cfg.webhooks, lines);
  if (cfg.scaling) {
    tomlTable('[scaling]', cfg.scaling, lines);
    if (cfg.scaling.redis) tomlTable('[scaling.redis]', cfg.scaling.redis, lines);
  }
  for (const app of cfg.apps || []) {
    tomlTable('[[apps]]', app, lines);
    if (app.rate_limiting) tomlTable('[apps.rate_limiting]', app.rate_limiting, lines);
    for (const hook of app.webhooks || []) tomlTable('[[apps.webhooks]]', hook, lines, { inline: true });
  }
  return lines.join('\n');
}


// GET url over https, trusting ca (PEM); resolves { status, body }.
function httpsGet(url, ca) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: 1000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// tls: { cert, key, ca } serves wss:// and https:// on the port: cert and
// key are PEM file paths written to [server.tls]; ca is the PEM text that
// signs cert (the health check trusts only it). server.tls keeps it.
export async function startServer({ env = {}, config = null, label = 'reverb', healthPath, port: fixedPort, tls = null } = {}) {
  if (tls) {
    config = config || { apps: [{ ...DEFAULT_APP }] };
    config = { ...config, server: { ...(config.server || {}), tls: { cert: tls.cert, key: tls.key } } };
  }
  if (!fs.existsSync(REVERB_BIN)) {
    throw new Error(
      `server binary not found at ${REVERB_BIN}; build it with "cd /work/main && go build -o bin/reverb ./cmd/reverb" or set REVERB_BIN`,
    );
  }
  const port = fixedPort || (await freePort());
  const args = ['start', '--host', HOST, '--port', String(port)];

  // Do not let the caller's environment leak app or scaling settings in.
  const childEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(REVERB_|REDIS_)/.test(k) && k !== 'REVERB_BIN') continue;
    childEnv[k] = v;
  }

  let tmpDir = null;
  let apps;
  let prefix = '';
  if (config) {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'reverb-e2e-'));
    const full = { ...config, server: { host: HOST, port, ...(config.server || {}) } };
    full.server.port = port;
    const file = path.join(tmpDir, 'reverb.toml');
    fs.writeFileSync(file, toToml(full));
    args.push('--config', file);
    // env still applies (it overrides the file, as the server documents)
    Object.assign(childEnv, env);
    apps = config.apps;
    prefix = (config.server && config.server.path) || '';
  } else {
    Object.assign(childEnv, {
      REVERB_APP_ID: DEFAULT_APP.app_id,
      REVERB_APP_KEY: DEFAULT_APP.key,
      REVERB_APP_SECRET: DEFAULT_APP.secret,
    });
    Object.assign(childEnv, env);
    apps = [{ app_id: childEnv.REVERB_APP_ID, key: childEnv.REVERB_APP_KEY, secret: childEnv.REVERB_APP_SECRET }];
  }

  const child = spawnLogged(REVERB_BIN, args, { env: childEnv });
  const { proc, exitPromise } = child;

  const server = {
    label: `${label}:${port}`,
    host: HOST,
    port,
    prefix,
    apps,
    app: apps[0],
    proc,
    args,
    healthPath: null,
    logs: child.logs,
    httpBase: `${tls ? 'https' : 'http'}://${HOST}:${port}`,
    wsBase: `${tls ? 'wss' : 'ws'}://${HOST}:${port}`,
    tls,
    exited: child.exited,
    exitPromise,
    async stop() {
      serverLogSources.delete(server);
      await child.terminate();
      if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
      if (process.env.E2E_SERVER_LOGS) process.stderr.write(`--- ${server.label} logs ---\n${child.logs()}\n`);
    },
  };
  serverLogSources.add(server);

  // Wait until /up (or {path}/up when a path prefix is configured) answers
  // 200 {"health":"OK"}; deadline 10 s.
  const candidates = healthPath ? [healthPath] : prefix ? [`${prefix}/up`, '/up'] : ['/up'];
  const deadline = Date.now() + 10_000;
  let lastErr = 'no attempt';
  while (Date.now() < deadline) {
    if (child.exited()) break;
    for (const p of candidates) {
      try {
        let res, body;
        if (tls) {
          res = await httpsGet(`${server.httpBase}${p}`, tls.ca);
          body = res.body;
        } else {
          res = await fetch(`${server.httpBase}${p}`, { signal: AbortSignal.timeout(1000) });
          body = await res.text();
        }
        if (res.status === 200 && body.includes('"health"')) {
          server.healthPath = p;
          return server;
        }
        lastErr = `GET ${p} -> ${res.status} ${body.slice(0, 200)}`;
      } catch (e) {
        lastErr = `GET ${p} -> ${e.cause?.code || e.message}`;
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await server.stop();
  throw new Error(
    `server did not become healthy within 10 s (${child.exited() ? `exited ${JSON.stringify(child.exited())}` : lastErr})\n` +
      `command: ${REVERB_BIN} ${args.join(' ')}\n` +
      (config ? `config:\n${toToml({ ...config, server: { host: HOST, port, ...(config.server || {}) } })}\n` : '') +
      `output:\n${child.logs()}`,
  );
}
