// Negotiate-level server options, checked with the official JS client: negotiate version 0,
// a required bearer token on every transport, a negotiate redirect that hands out a token,
// a restricted transport list, and a custom hub path.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServer, startServer } from './server.mjs';
import { PAIRS, HttpTransportType, itConn, settle, errorText, waitUntil } from './client.mjs';

describe('--negotiate-version 0', () => {
  const server = useServer(['--negotiate-version', '0'], { name: 'negotiate-v0' });
  for (const pair of PAIRS) {
    itConn(`${pair.name}: connects with a version 0 negotiate (connectionId doubles as the token)`, server, async (h) => {
      const c = await h.connect(server().url, { transport: pair.transport, protocol: pair.protocol });
      const id = await c.connection.invoke('GetConnectionId');
      assert.equal(id, c.connection.connectionId);
      assert.equal(await c.connection.invoke('Echo', 'v0'), 'v0');
    });
  }

  itConn('negotiate answers negotiateVersion 0 without a connectionToken', server, async () => {
    const res = await fetch(`${server().url}/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.ok(!body.negotiateVersion, `negotiateVersion should be 0 or absent, got ${body.negotiateVersion}`);
    assert.equal(body.connectionToken, undefined);
    assert.equal(typeof body.connectionId, 'string');
  });
});

describe('--require-token', () => {
  const TOKEN = 'interop-secret-token';
  const server = useServer(['--require-token', TOKEN], { name: 'require-token' });
  for (const pair of PAIRS) {
    itConn(`${pair.name}: accessTokenFactory with the right token connects`, server, async (h) => {
      const c = await h.connect(server().url, { transport: pair.transport, protocol: pair.protocol, accessTokenFactory: () => TOKEN });
      assert.equal(await c.connection.invoke('Echo', 'authorized'), 'authorized');
    });
  }

  itConn('no token: start() fails with 401', server, async (h) => {
    const c = await h.connect(server().url, { start: false });
    const r = await settle(c.connection.start());
    assert.equal(r.ok, false, 'start must fail without the token');
    assert.match(errorText(r.error), /401|Unauthorized/i);
  });

  itConn('wrong token: start() fails with 401', server, async (h) => {
    const c = await h.connect(server().url, { start: false, accessTokenFactory: () => 'wrong' });
    const r = await settle(c.connection.start());
    assert.equal(r.ok, false, 'start must fail with the wrong token');
    assert.match(errorText(r.error), /401|Unauthorized/i);
  });
});

describe('--redirect-url with --redirect-token', () => {
  const TOKEN = 'redirected-token';
  let target = null;
  let redirector = null;
  before(async () => {
    target = await startServer(['--require-token', TOKEN], { name: 'redirect-target' });
    redirector = await startServer(['--redirect-url', target.url, '--redirect-token', TOKEN], { name: 'redirector' });
  });
  after(async () => {
    await redirector?.stop();
    await target?.stop();
  });

  for (const pair of PAIRS) {
    itConn(`${pair.name}: the client follows the redirect and uses its access token`, () => target, async (h) => {
      const c = await h.connect(redirector.url, { transport: pair.transport, protocol: pair.protocol });
      assert.equal(await c.connection.invoke('Echo', 'redirected'), 'redirected');
      // The client's own log shows the second negotiate going to the redirect target (which
      // requires the token, so the redirect's accessToken was used).
      assert.ok(
        h.logLines.some((l) => l.includes(`Sending negotiation request: ${target.url}/negotiate`)),
        'the client negotiated with the redirect target',
      );
    });
  }
});

describe('--transports lp', () => {
  const server = useServer(['--transports', 'lp'], { name: 'transports-lp' });

  itConn('a client allowing every transport falls back to long polling', server, async (h) => {
    const c = await h.connect(server().url, { protocol: 'json' });
    assert.equal(await c.connection.invoke('Echo', 'lp only'), 'lp only');
    assert.equal(c.connection.connection.transport?.constructor?.name, 'LongPollingTransport');
  });

  itConn('a client that insists on WebSockets fails to start', server, async (h) => {
    const c = await h.connect(server().url, { protocol: 'json', transport: HttpTransportType.WebSockets, start: false });
    const r = await settle(c.connection.start());
    assert.equal(r.ok, false, 'WebSockets is not offered, so start must fail');
  });
});

describe('--transports ws,sse with MessagePack', () => {
  const server = useServer(['--transports', 'ws,sse'], { name: 'transports-ws-sse' });

  itConn('MessagePack over default transports picks WebSockets (SSE has no binary)', server, async (h) => {
    const c = await h.connect(server().url, { protocol: 'messagepack' });
    assert.equal(c.connection.connection.transport?.constructor?.name, 'WebSocketTransport');
    assert.equal(await c.connection.invoke('Echo', 'ws'), 'ws');
  });

  itConn('SSE forced with MessagePack fails to start (no Binary transfer format)', server, async (h) => {
    const c = await h.connect(server().url, { protocol: 'messagepack', transport: HttpTransportType.ServerSentEvents, start: false });
    const r = await settle(c.connection.start());
    assert.equal(r.ok, false);
  });
});

describe('--hub-path /other/hub', () => {
  const server = useServer(['--hub-path', '/other/hub'], { name: 'hub-path' });

  itConn('prints and serves the custom path', server, async (h) => {
    assert.match(server().url, /^http:\/\/127\.0\.0\.1:\d+\/other\/hub$/);
    const c = await h.connect(server().url, { protocol: 'json' });
    await waitUntil(() => c.welcomes.length > 0, 5000, 'welcome');
    assert.equal(await c.connection.invoke('Echo', 'path'), 'path');
  });
});
