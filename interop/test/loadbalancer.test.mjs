// The official JS client through the HAProxy set-up our own client is tested behind
// (examples/tests/field/haproxy.rs): two test-server instances, round-robin with cookie
// affinity. The JS client keeps cookies in Node (its fetch uses a tough-cookie jar, and its
// WebSocket sends the jar's Cookie header), so every pair passes; without affinity negotiate
// and connect land on different instances, and with skipNegotiation WebSockets still pass.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Subject } from '@microsoft/signalr';
import { startServer } from './server.mjs';
import { findProgram, startHaproxy } from './programs.mjs';
import { PAIRS, HttpTransportType, itConn, nonce, waitUntil, within, settle } from './client.mjs';

const haproxy = findProgram('haproxy', 'haproxy');
const skip = haproxy ? false : 'haproxy is not installed (apt-get install -y haproxy)';

/** Two instances named s0 and s1, and HAProxy in front of them. */
function useCluster({ affinity }) {
  const state = {};
  before(async () => {
    if (!haproxy) return;
    state.servers = [
      await startServer(['--server-name', 's0'], { name: 'lb-s0' }),
      await startServer(['--server-name', 's1'], { name: 'lb-s1' }),
    ];
    state.lb = await startHaproxy(haproxy, state.servers.map((s) => `127.0.0.1:${s.port}`), { affinity });
  });
  after(async () => {
    if (state.lb) await state.lb.stop();
    for (const s of state.servers || []) await s.stop();
  });
  return state;
}

describe('behind HAProxy with cookie affinity', { skip }, () => {
  const cluster = useCluster({ affinity: true });
  const seen = new Set();

  for (const pair of PAIRS) {
    const opts = { transport: pair.transport, protocol: pair.protocol };
    itConn(`${pair.name}: the hub contract through the balancer`, null, async (h) => {
      const got = [];
      const seq = [];
      const c = await h.connect(cluster.lb.url, {
        ...opts,
        handlers: {
          lbPayload: (p) => { got.push(p); },
          lbGroup: (p) => { got.push(p); },
          seq: (i) => { seq.push(i); },
          lbAsk: (x) => x + 1,
        },
      });
      const name = await c.connection.invoke('GetServerName');
      seen.add(name);
      assert.equal(await c.connection.invoke('Echo', 'héllo'), 'héllo');
      assert.equal(await c.connection.invoke('Add', 40, 2), 42);
      const items = await new Promise((resolve, reject) => {
        const out = [];
        c.connection.stream('Counter', 5, 5).subscribe({ next: (i) => out.push(i), complete: () => resolve(out), error: reject });
      });
      assert.deepEqual(items, [0, 1, 2, 3, 4]);
      const subject = new Subject();
      const sum = c.connection.invoke('Sum', subject);
      for (let i = 1; i <= 10; i++) subject.next(i);
      subject.complete();
      assert.equal(await within(sum, 5000, 'Sum'), 55);
      const payload = `p-${nonce()}`;
      assert.equal(await c.connection.invoke('SendToCaller', 'lbPayload', payload), 'sent');
      const group = `g-${nonce()}`;
      await c.connection.invoke('JoinGroup', group);
      await c.connection.invoke('SendToGroup', group, 'lbGroup', `${payload}-group`);
      await waitUntil(() => got.includes(payload) && got.includes(`${payload}-group`), 5000, 'caller and group messages');
      assert.equal(await c.connection.invoke('AskClient', 'lbAsk', 41), 42);
      assert.equal(await c.connection.invoke('Sequence', 100), 100);
      await waitUntil(() => seq.length === 100, 5000, 'Sequence(100)');
      assert.deepEqual(seq, [...Array(100).keys()]);
      const r = await settle(c.connection.invoke('Fail', 'lb failure'));
      assert.equal(r.ok, false);
      // Every call reached the instance that negotiated the connection.
      assert.equal(await c.connection.invoke('GetServerName'), name);
    }, { skip });
  }

  itConn('connections were spread over both instances', null, async () => {
    assert.deepEqual([...seen].sort(), ['s0', 's1']);
  }, { skip });

  for (const transport of [HttpTransportType.WebSockets, HttpTransportType.ServerSentEvents, HttpTransportType.LongPolling]) {
    itConn(`${HttpTransportType[transport]}: an automatic reconnect lands on the same instance`, null, async (h) => {
      const c = await h.connect(cluster.lb.url, { transport, reconnect: [0, 100, 500] });
      const before = await c.connection.invoke('GetServerName');
      const firstId = c.connection.connectionId;
      await settle(c.connection.invoke('AbortMe'));
      await waitUntil(() => c.reconnected.length > 0, 8000, 'onreconnected');
      assert.notEqual(c.connection.connectionId, firstId);
      assert.equal(await c.connection.invoke('GetServerName'), before);
    }, { skip });
  }
});

describe('behind HAProxy without affinity', { skip }, () => {
  const cluster = useCluster({ affinity: false });

  itConn('negotiate, then the WebSocket on the other instance: start fails', null, async (h) => {
    const r = await settle(h.connect(cluster.lb.url, { transport: HttpTransportType.WebSockets }));
    assert.equal(r.ok, false, 'start must fail when the connect reaches another instance');
  }, { skip });

  itConn('skipNegotiation WebSockets need no affinity', null, async (h) => {
    const c = await h.connect(cluster.lb.url, { transport: HttpTransportType.WebSockets, skipNegotiation: true });
    assert.equal(await c.connection.invoke('Add', 1, 2), 3);
  }, { skip });
});
