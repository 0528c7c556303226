// Connection lifecycle against the official JS client: skip-negotiation, server-initiated Close
// (with and without allowReconnect), and a dropped transport (AbortMe) with automatic reconnect.

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './server.mjs';
import { PAIRS, HttpTransportType, MessageType, itConn, nonce, sleep, waitUntil, errorText } from './client.mjs';

const server = useServer([], { name: 'lifecycle' });

describe('skip negotiation (WebSockets only)', () => {
  for (const protocol of ['json', 'messagepack']) {
    itConn(`WebSockets/${protocol === 'json' ? 'JSON' : 'MessagePack'}: skipNegotiation connects straight to the hub URL`, server, async (h) => {
      const c = await h.connect(server().url, { transport: HttpTransportType.WebSockets, protocol, skipNegotiation: true });
      assert.equal(c.connection.connectionId, null, 'no negotiate, so the client has no connection id');
      assert.equal(await c.connection.invoke('Echo', 'skip'), 'skip');
      assert.equal(await c.connection.invoke('Add', 40, 2), 42);
      const id = await c.connection.invoke('GetConnectionId');
      assert.equal(typeof id, 'string');
      assert.ok(id.length > 0, 'the server still assigns a connection id');
      await waitUntil(() => c.welcomes.length > 0, 5000, 'welcome');
      assert.equal(c.welcomes[0], id, 'welcome carries the same id as GetConnectionId');
      const seq = [];
      c.connection.on('seq', (i) => { seq.push(i); });
      assert.equal(await c.connection.invoke('Sequence', 20), 20);
      assert.deepEqual(seq, Array.from({ length: 20 }, (_, i) => i));
    });
  }
});

for (const pair of PAIRS) {
  describe(`${pair.name}: server close and reconnect`, () => {
    const opts = { transport: pair.transport, protocol: pair.protocol };
    const it = (name, body, o) => itConn(`${pair.name}: ${name}`, server, body, o);

    it('CloseMe(error, allow_reconnect=false): onclose with the error, no reconnect', async (h) => {
      const c = await h.connect(server().url, { ...opts, reconnect: [0, 0] });
      const text = `bye-${nonce()}`;
      await c.connection.send('CloseMe', text, false);
      await waitUntil(() => c.closes.length > 0 || c.reconnecting.length > 0, 5000, 'onclose');
      assert.equal(c.reconnecting.length, 0, `the client reconnected instead of closing: onreconnecting(${errorText(c.reconnecting[0])})`);
      assert.ok(c.closes[0], 'onclose must carry an error');
      assert.ok(errorText(c.closes[0]).includes(text), `onclose error ${JSON.stringify(errorText(c.closes[0]))} should contain ${JSON.stringify(text)}`);
      await sleep(300);
      assert.equal(c.reconnecting.length, 0, 'no reconnect after a Close without allowReconnect');
      assert.equal(c.closes.length, 1);
      assert.equal(c.connection.state, 'Disconnected');
    });

    it('CloseMe(null, allow_reconnect=false): onclose without an error, no reconnect', async (h) => {
      const c = await h.connect(server().url, { ...opts, reconnect: [0, 0] });
      await c.connection.send('CloseMe', null, false);
      await waitUntil(() => c.closes.length > 0 || c.reconnecting.length > 0, 5000, 'onclose');
      assert.equal(c.reconnecting.length, 0, `the client reconnected instead of closing: onreconnecting(${errorText(c.reconnecting[0])})`);
      assert.equal(c.closes[0], null, `onclose should carry no error, got ${JSON.stringify(errorText(c.closes[0]))}`);
      await sleep(300);
      assert.equal(c.reconnecting.length, 0, 'no reconnect after a Close without allowReconnect');
      assert.equal(c.connection.state, 'Disconnected');
    });

    it('CloseMe(error, allow_reconnect=true): onreconnecting then onreconnected on a new connection', async (h) => {
      const c = await h.connect(server().url, { ...opts, reconnect: [0] });
      const firstId = c.connection.connectionId;
      await waitUntil(() => c.welcomes.length === 1, 5000, 'first welcome');
      const text = `come-back-${nonce()}`;
      await c.connection.send('CloseMe', text, true);
      await waitUntil(() => c.reconnected.length > 0 || c.closes.length > 0, 8000, 'onreconnected');
      assert.equal(c.closes.length, 0, `connection closed instead of reconnecting: ${errorText(c.closes[0])}`);
      assert.equal(c.reconnecting.length, 1, 'onreconnecting fired once');
      assert.ok(errorText(c.reconnecting[0]).includes(text), `onreconnecting error ${JSON.stringify(errorText(c.reconnecting[0]))} should contain ${JSON.stringify(text)}`);
      assert.equal(c.reconnected.length, 1);
      const newId = c.reconnected[0];
      assert.equal(newId, c.connection.connectionId);
      assert.notEqual(newId, firstId, 'a reconnect after Close is a new connection');
      assert.equal(await c.connection.invoke('GetConnectionId'), newId);
      await waitUntil(() => c.welcomes.length === 2, 5000, 'second welcome');
      assert.deepEqual(c.welcomes, [firstId, newId]);
      assert.equal(await c.connection.invoke('Echo', 'again'), 'again');
    });

    it('AbortMe: transport dropped without Close; automatic reconnect to a new, working connection', async (h) => {
      const c = await h.connect(server().url, { ...opts, reconnect: [0, 0, 0] });
      const firstId = c.connection.connectionId;
      await c.connection.send('AbortMe');
      await waitUntil(() => c.reconnected.length > 0 || c.closes.length > 0, 8000, 'onreconnected');
      assert.equal(c.closes.length, 0, `connection closed instead of reconnecting: ${errorText(c.closes[0])}`);
      assert.ok(c.reconnecting.length >= 1, 'onreconnecting fired');
      assert.equal(c.reconnected.length, 1, 'onreconnected fired once');
      // No Close message may precede an abort.
      assert.equal(c.received(MessageType.Close).length, 0, 'AbortMe must not send a Close message');
      const newId = c.connection.connectionId;
      assert.equal(c.reconnected[0], newId);
      assert.notEqual(newId, firstId, 'new connection id after an abort (no stateful reconnect)');
      assert.equal(await c.connection.invoke('GetConnectionId'), newId);
      assert.equal(await c.connection.invoke('Echo', 'after abort'), 'after abort');
      assert.equal(await c.connection.invoke('Add', 20, 22), 42);
    });

    it('an invocation pending when the transport drops is rejected, not left hanging', async (h) => {
      const c = await h.connect(server().url, { ...opts, reconnect: [0, 0, 0] });
      // A long stream is in flight when the transport drops.
      const streamDone = new Promise((resolve) => {
        c.connection.stream('Counter', 1000, 50).subscribe({ next: () => {}, complete: () => resolve('complete'), error: (e) => resolve(e) });
      });
      await sleep(120);
      await c.connection.send('AbortMe');
      const outcome = await streamDone;
      assert.ok(outcome instanceof Error, `the stream should fail when the connection drops, got ${String(outcome)}`);
      await waitUntil(() => c.reconnected.length > 0 || c.closes.length > 0, 8000, 'onreconnected');
      assert.equal(await c.connection.invoke('Echo', 1), 1);
    });
  });
}
