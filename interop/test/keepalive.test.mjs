// Keep-alive, timeouts and a half-open link (Blackhole), with short server settings so they run in
// a few seconds: --keep-alive-ms 400 --client-timeout-ms 2000 --poll-timeout-ms 700.
//
// Pings are not used on long polling (the poll cycle is the keep-alive), and the JS client has no
// server timeout there, so the ping/timeout/blackhole cases run on WebSockets and SSE only, and
// long polling gets its own idle test instead.

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './server.mjs';
import { PAIRS, HttpTransportType, MessageType, itConn, sleep, waitUntil, errorText } from './client.mjs';

const server = useServer(['--keep-alive-ms', '400', '--client-timeout-ms', '2000', '--poll-timeout-ms', '700'], { name: 'keepalive' });

const PINGING = PAIRS.filter((p) => p.transport !== HttpTransportType.LongPolling);
const POLLING = PAIRS.filter((p) => p.transport === HttpTransportType.LongPolling);

describe('idle connections', { concurrency: true }, () => {
  for (const pair of PINGING) {
    itConn(`${pair.name}: an idle connection stays up on pings both ways (server keep-alive 400 ms, client timeout 1.6 s)`, server, async (h) => {
      const c = await h.connect(server().url, { transport: pair.transport, protocol: pair.protocol, keepAlive: 400, serverTimeout: 1600 });
      await sleep(2600);
      assert.equal(c.closes.length, 0, `connection closed while idle: ${errorText(c.closes[0])}`);
      const pings = c.received(MessageType.Ping).length;
      assert.ok(pings >= 3, `expected the server to ping every ~400 ms while idle, saw ${pings} pings in 2.6 s`);
      assert.equal(await c.connection.invoke('Echo', 'awake'), 'awake');
    });

    itConn(`${pair.name}: the server drops a client that sends nothing for --client-timeout-ms`, server, async (h) => {
      // keep-alive 20 s: the client sends no pings; server timeout 20 s: the client won't give up first.
      const c = await h.connect(server().url, { transport: pair.transport, protocol: pair.protocol, keepAlive: 20_000, serverTimeout: 20_000 });
      const t0 = Date.now();
      await waitUntil(() => c.closes.length > 0, 6000, 'the server to close a silent client (client timeout 2 s)');
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 1500, `closed after ${elapsed} ms, before the 2 s client timeout`);
    });
  }

  for (const pair of POLLING) {
    itConn(`${pair.name}: an idle long-polling connection outlives poll timeouts and the client timeout`, server, async (h) => {
      const c = await h.connect(server().url, { transport: pair.transport, protocol: pair.protocol });
      await sleep(2800);
      assert.equal(c.closes.length, 0, `connection closed while idle: ${errorText(c.closes[0])}`);
      assert.equal(await c.connection.invoke('Echo', 'still polling'), 'still polling');
      const seq = [];
      c.connection.on('seq', (i) => { seq.push(i); });
      assert.equal(await c.connection.invoke('Sequence', 30), 30);
      assert.deepEqual(seq, Array.from({ length: 30 }, (_, i) => i));
    });
  }
});

describe('half-open link (Blackhole)', { concurrency: true }, () => {
  for (const pair of PINGING) {
    itConn(`${pair.name}: Blackhole(4000) is detected by the client's server timeout and it reconnects`, server, async (h) => {
      const c = await h.connect(server().url, {
        transport: pair.transport,
        protocol: pair.protocol,
        keepAlive: 400,
        serverTimeout: 1600,
        reconnect: [0, 300, 300, 300, 300, 300, 300],
      });
      const id = c.connection.connectionId;
      await c.connection.send('Blackhole', 4000);
      const t0 = Date.now();
      await waitUntil(() => c.reconnecting.length > 0 || c.closes.length > 0, 5000, 'onreconnecting after the server went silent');
      const detected = Date.now() - t0;
      assert.ok(detected >= 1000, `reconnecting after ${detected} ms; the server was not silent for the client's 1.6 s timeout`);
      assert.match(errorText(c.reconnecting[0]), /timeout/i, 'the reason is the server timeout');
      await waitUntil(() => c.reconnected.length > 0 || c.closes.length > 0, 6000, 'onreconnected');
      assert.equal(c.closes.length, 0, `closed instead of reconnecting: ${errorText(c.closes[0])}`);
      assert.notEqual(c.connection.connectionId, id);
      assert.equal(await c.connection.invoke('Echo', 'through'), 'through');
    });
  }
});
