// TLS on the server's port ([server.tls]): pusher-js over wss:// (forceTLS)
// on a public and a private channel, events triggered by the pusher SDK over
// https://, and the HTTPS API. The certificate is a self-signed ECDSA P-256
// one made by openssl for 127.0.0.1; every client trusts it (and only it) and
// keeps verifying: the SDK through an https.Agent with `ca`, pusher-js
// (whose Node transport takes no TLS options) through tls.connect, which
// this file wraps to add the same `ca` for connections to the server's port.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { startServer, HOST } from '../lib/server.js';
import { pusherClient, sdkFor, sdkCall, subscribed, channelEvent, closeAllClients } from '../lib/clients.js';

// Writes a self-signed certificate for 127.0.0.1 and its key into dir.
function selfSigned(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', key, '-out', cert,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { cert, key, ca: fs.readFileSync(cert, 'utf8') };
}

describe('TLS: wss:// and https:// on the server port', () => {
  let dir;
  let srv;
  let sdk;
  let agent;
  let fingerprint;
  const origConnect = tls.connect;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reverb-e2e-tls-'));
    const files = selfSigned(dir);
    fingerprint = new crypto.X509Certificate(files.ca).fingerprint256;
    srv = await startServer({ label: 'tls', tls: files });
    agent = new https.Agent({ ca: files.ca, keepAlive: true });
    sdk = sdkFor(srv, srv.app, { useTLS: true, agent });
    // pusher-js's Node transport (faye-websocket) calls tls.connect with the
    // URL's host and port only.
    tls.connect = function (options, ...rest) {
      if (options && typeof options === 'object' && options.ca === undefined && options.host === HOST &&
          Number(options.port) === srv.port) {
        // (SNI carries no IP address; faye-websocket sets one, which Node warns about.)
        options = { ...options, ca: files.ca, servername: net.isIP(options.servername) ? undefined : options.servername };
      }
      return origConnect.call(this, options, ...rest);
    };
  });
  afterEach(closeAllClients);
  after(async () => {
    tls.connect = origConnect;
    await closeAllClients();
    agent?.destroy();
    await srv?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const wss = (extra = {}) => ({ sdk, options: { forceTLS: true, wssPort: srv.port, ...extra } });

  it('pusher-js connects over wss:// and the server presents the configured certificate', async () => {
    const p = await pusherClient(srv, wss());
    assert.match(p.connection.socket_id, /^\d+\.\d+$/);
    const sock = p.sockets[0];
    assert.ok(sock?.url?.startsWith(`wss://${HOST}:${srv.port}/app/${srv.app.key}?`), `socket URL ${sock?.url}`);
    const stream = sock._stream;
    assert.ok(stream instanceof tls.TLSSocket, 'the socket is a TLS socket');
    assert.equal(stream.authorized, true, `authorized: ${stream.authorizationError}`);
    assert.equal(stream.getPeerX509Certificate().fingerprint256, fingerprint);
  });

  it('public and private channels over wss:// receive events the SDK triggers over https://', async () => {
    const p = await pusherClient(srv, wss());
    const pub = await subscribed(p, 'tls-news');
    const priv = await subscribed(p, 'private-tls-orders');

    const r1 = await sdkCall(sdk.trigger('tls-news', 'headline', { title: 'over TLS', n: 1 }));
    assert.equal(r1.status, 200, r1.body);
    assert.deepEqual(r1.json, {});
    const e1 = await channelEvent(pub, 'headline');
    assert.deepEqual(e1.data, { title: 'over TLS', n: 1 });

    const r2 = await sdkCall(sdk.trigger('private-tls-orders', 'order.shipped', { id: 7, to: 'Ann' }));
    assert.equal(r2.status, 200, r2.body);
    const e2 = await channelEvent(priv, 'order.shipped');
    assert.deepEqual(e2.data, { id: 7, to: 'Ann' });

    // A batch over the same kept-alive https connection reaches both channels.
    const r3 = await sdkCall(
      sdk.triggerBatch([
        { channel: 'tls-news', name: 'batch', data: { i: 1 } },
        { channel: 'private-tls-orders', name: 'batch', data: { i: 2 } },
      ]),
    );
    assert.equal(r3.status, 200, r3.body);
    assert.deepEqual((await channelEvent(pub, 'batch')).data, { i: 1 });
    assert.deepEqual((await channelEvent(priv, 'batch')).data, { i: 2 });
  });

  it('HTTPS API: channel list, channel info and connection count', async () => {
    const p = await pusherClient(srv, wss());
    await subscribed(p, 'tls-listed');
    await subscribed(p, 'private-tls-listed');

    const list = await sdkCall(sdk.get({ path: '/channels', params: { filter_by_prefix: 'private-tls-' } }));
    assert.equal(list.status, 200, list.body);
    assert.deepEqual(Object.keys(list.json.channels), ['private-tls-listed']);

    const all = await sdkCall(sdk.get({ path: '/channels' }));
    assert.equal(all.status, 200, all.body);
    assert.ok('tls-listed' in all.json.channels, all.body);

    const info = await sdkCall(sdk.get({ path: '/channels/tls-listed', params: { info: 'subscription_count' } }));
    assert.equal(info.status, 200, info.body);
    assert.equal(info.json.occupied, true);
    assert.equal(info.json.subscription_count, 1);

    const conns = await sdkCall(sdk.get({ path: '/connections' }));
    assert.equal(conns.status, 200, conns.body);
    assert.equal(conns.json.connections, 1);
  });

  it('a client that does not trust the certificate is refused by its own verification', async () => {
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = origConnect({ host: HOST, port: srv.port, servername: 'localhost' }, () => resolve(s.end()));
        s.once('error', reject);
      }),
      (e) => /self[- ]signed|unable to verify|altname/i.test(`${e.code} ${e.message}`),
    );
  });
});
