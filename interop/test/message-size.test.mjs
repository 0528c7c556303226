// Maximum receive message size: a 200 KB Echo works when the server allows 1,000,000 bytes, and
// fails (the server closes the connection) with the default 32 KiB limit.

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './server.mjs';
import { PAIRS, itConn, waitUntil, within, settle, errorText } from './client.mjs';

function bigString(n) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[(i * 7 + (i >> 5)) % alphabet.length];
  return s;
}

const BIG = bigString(200_000);
const UNDER_DEFAULT = bigString(30_000); // framed JSON/MessagePack message stays under 32,768 bytes

describe('server with --max-message-size 1000000', () => {
  const server = useServer(['--max-message-size', '1000000'], { name: 'max-1000000' });
  for (const pair of PAIRS) {
    itConn(`${pair.name}: Echo of a 200 KB string round-trips`, server, async (h) => {
      const c = await h.connect(server().url, { transport: pair.transport, protocol: pair.protocol });
      const back = await within(c.connection.invoke('Echo', BIG), 8000, '200 KB Echo');
      assert.equal(typeof back, 'string');
      assert.equal(back.length, BIG.length);
      assert.ok(back === BIG, 'echoed string differs from the one sent');
      // And the connection is still fine afterwards.
      assert.equal(await c.connection.invoke('Add', 1, 2), 3);
    });
  }
});

describe('server with the default 32 KiB limit', () => {
  const server = useServer([], { name: 'max-default' });
  for (const pair of PAIRS) {
    itConn(`${pair.name}: Echo of a 30 KB string (under the limit) works`, server, async (h) => {
      const c = await h.connect(server().url, { transport: pair.transport, protocol: pair.protocol });
      assert.ok((await c.connection.invoke('Echo', UNDER_DEFAULT)) === UNDER_DEFAULT);
    });

    itConn(`${pair.name}: Echo of a 200 KB string fails and the server closes the connection`, server, async (h) => {
      const c = await h.connect(server().url, { transport: pair.transport, protocol: pair.protocol });
      const r = await settle(within(c.connection.invoke('Echo', BIG), 8000, '200 KB Echo settles'));
      assert.equal(r.ok, false, 'a message over the limit must not be echoed');
      assert.ok(!/timed out/.test(errorText(r.error)), `the oversized invocation hung instead of failing: ${errorText(r.error)}`);
      await waitUntil(() => c.closes.length > 0, 5000, 'onclose after an oversized message');
      assert.equal(c.connection.state, 'Disconnected');
    });
  }
});
