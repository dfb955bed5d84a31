// HTTP API error paths (raw fetch and the SDK) and the [server] path prefix.

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
  rawRequest,
  closeAllClients,
  PusherSDK,
} from '../lib/clients.js';

const APP = { app_id: '2001', key: 'api-key', secret: 'api-secret' };

describe('HTTP API errors', () => {
  let srv;
  let sdk;
  let sub;

  async function stillServed(tag) {
    const from = sub.mark();
    const res = await sdkCall(sdk.trigger('api-health', 'alive', { tag }));
    assert.equal(res.status, 200, res.body);
    const m = await sub.waitEvent('alive', { from });
    assert.deepEqual(m.data, { tag });
  }

  before(async () => {
    srv = await startServer({
      label: 'http-api',
      config: {
        server: { max_request_size: 10000 },
        limits: { max_channels_per_event: 3, max_batch_size: 2 },
        apps: [APP],
      },
    });
    sdk = sdkFor(srv);
    sub = await RawClient.established(srv);
    await sub.subscribeOk('api-health');
  });
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  const eventBody = { name: 'e', channel: 'api-health', data: '{"x":1}' };
  const eventsPath = `/apps/${APP.app_id}/events`;

  it('GET /up answers 200 {"health":"OK"} without auth', async () => {
    const res = await rawRequest(srv, '/up');
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { health: 'OK' });
  });

  it('unsigned requests get 401', async () => {
    const post = await rawRequest(srv, eventsPath, { method: 'POST', body: JSON.stringify(eventBody) });
    assert.equal(post.status, 401, post.body);
    const get = await rawRequest(srv, `/apps/${APP.app_id}/channels`);
    assert.equal(get.status, 401, get.body);
    process.stdout.write(`# observed 401 body: ${JSON.stringify(post.body)}\n`);
    await stillServed('unsigned');
  });

  it('a wrong signature gets 401 (raw and SDK)', async () => {
    const raw = await signedRequest(srv, { method: 'POST', path: eventsPath, body: eventBody, secret: 'wrong-secret' });
    assert.equal(raw.status, 401, raw.body);
    const wrongSdk = sdkFor(srv, { ...APP, secret: 'wrong-secret' });
    const res = await sdkCall(wrongSdk.trigger('api-health', 'nope', {}));
    assert.equal(res.status, 401, res.body);
    const res2 = await sdkCall(wrongSdk.get({ path: '/channels' }));
    assert.equal(res2.status, 401, res2.body);
    // a body changed after signing (body_md5 no longer matches)
    const signer = new PusherSDK({ appId: APP.app_id, key: APP.key, secret: APP.secret });
    const qs = signer.createSignedQueryString({ method: 'POST', path: eventsPath, body: JSON.stringify(eventBody) });
    const tampered = await rawRequest(srv, `${eventsPath}?${qs}`, {
      method: 'POST',
      body: JSON.stringify({ ...eventBody, data: '{"x":2}' }),
    });
    assert.equal(tampered.status, 401, `tampered body: ${tampered.status} ${tampered.body}`);
    await stillServed('wrong-signature');
    assert.equal(sub.events('nope').length, 0);
  });

  it('an unknown app id gets 404', async () => {
    const res = await signedRequest(srv, {
      method: 'POST',
      path: '/apps/999999/events',
      body: eventBody,
      app: { ...APP, app_id: '999999' },
    });
    assert.equal(res.status, 404, res.body);
    const viaSdk = await sdkCall(sdkFor(srv, { ...APP, app_id: '999999' }).trigger('api-health', 'nope', {}));
    assert.equal(viaSdk.status, 404, viaSdk.body);
    await stillServed('unknown-app');
  });

  it('a body over max_request_size gets 413', async () => {
    const big = { name: 'big', channel: 'api-health', data: 'x'.repeat(12000) };
    const res = await signedRequest(srv, { method: 'POST', path: eventsPath, body: big });
    assert.equal(res.status, 413, res.body);
    const viaSdk = await sdkCall(sdk.trigger('api-health', 'big', 'y'.repeat(12000)));
    assert.equal(viaSdk.status, 413, viaSdk.body);
    await stillServed('too-large');
    assert.equal(sub.events('big').length, 0);
  });

  it('non-string data (and missing fields) get 422', async () => {
    const res = await signedRequest(srv, {
      method: 'POST',
      path: eventsPath,
      body: { name: 'obj', channel: 'api-health', data: { x: 1 } },
    });
    assert.equal(res.status, 422, res.body);
    process.stdout.write(`# observed 422 body (object data): ${res.body}\n`);
    const noName = await signedRequest(srv, { method: 'POST', path: eventsPath, body: { channel: 'api-health', data: '{}' } });
    assert.equal(noName.status, 422, noName.body);
    const noData = await signedRequest(srv, { method: 'POST', path: eventsPath, body: { name: 'x', channel: 'api-health' } });
    assert.equal(noData.status, 422, noData.body);
    await stillServed('unprocessable');
    assert.equal(sub.events('obj').length, 0);
  });

  it('more channels than max_channels_per_event is rejected with 4xx; at the limit it is accepted', async () => {
    const over = await sdkCall(sdk.trigger(['api-health', 'c2', 'c3', 'c4'], 'too-many', {}));
    assert.ok(over.status >= 400 && over.status < 500, `status ${over.status} ${over.body}`);
    process.stdout.write(`# observed max_channels_per_event rejection: ${over.status} ${over.body}\n`);
    const at = await sdkCall(sdk.trigger(['api-health', 'c2', 'c3'], 'three', {}));
    assert.equal(at.status, 200, at.body);
    await sub.waitEvent('three');
    await stillServed('channels-limit');
    assert.equal(sub.events('too-many').length, 0);
  });

  it('a batch larger than max_batch_size is rejected with 4xx; at the limit it is accepted', async () => {
    const item = (name) => ({ channel: 'api-health', name, data: {} });
    const over = await sdkCall(sdk.triggerBatch([item('b1'), item('b2'), item('b3')]));
    assert.ok(over.status >= 400 && over.status < 500, `status ${over.status} ${over.body}`);
    process.stdout.write(`# observed max_batch_size rejection: ${over.status} ${over.body}\n`);
    const at = await sdkCall(sdk.triggerBatch([item('ok1'), item('ok2')]));
    assert.equal(at.status, 200, at.body);
    await sub.waitEvent('ok2');
    await stillServed('batch-limit');
    assert.equal(sub.events('b1').length + sub.events('b3').length, 0);
  });
});

describe('[server] path prefix', () => {
  let srv;
  before(async () => {
    srv = await startServer({ label: 'path-prefix', config: { server: { path: '/ws' }, apps: [APP] } });
  });
  afterEach(closeAllClients);
  after(async () => {
    await closeAllClients();
    await srv?.stop();
  });

  it('health check answers under the prefix', async () => {
    process.stdout.write(`# observed health path with prefix /ws: ${srv.healthPath}\n`);
    const res = await rawRequest(srv, '/ws/up');
    assert.equal(res.status, 200, `GET /ws/up -> ${res.status} ${res.body}`);
    assert.deepEqual(res.json, { health: 'OK' });
  });

  it('pusher-js with wsPath "/ws" connects; a request to /ws/apps/... signed over /apps/... triggers', async () => {
    const p = await pusherClient(srv);
    const ch = await subscribed(p, 'prefixed');
    const res = await signedRequest(srv, {
      method: 'POST',
      prefix: '/ws',
      path: `/apps/${APP.app_id}/events`,
      body: { name: 'via-prefix', channels: ['prefixed'], data: '{"ok":true}' },
    });
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(res.json, {});
    assert.deepEqual((await channelEvent(ch, 'via-prefix')).data, { ok: true });

    const info = await signedRequest(srv, { prefix: '/ws', path: `/apps/${APP.app_id}/channels/prefixed` });
    assert.equal(info.status, 200, info.body);
    assert.deepEqual(info.json, { occupied: true });
  });

  it('without the prefix the API is not found (404)', async () => {
    const res = await signedRequest(srv, {
      method: 'POST',
      path: `/apps/${APP.app_id}/events`,
      body: { name: 'x', channel: 'prefixed', data: '{}' },
    });
    assert.equal(res.status, 404, res.body);
  });
});
