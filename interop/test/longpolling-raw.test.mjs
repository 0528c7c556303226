// Long polling driven by hand (fetch), with the official JsonHubProtocol parsing what the server
// sends. It makes deterministic a timing the official client only hits now and then: the server
// ends the connection (CloseMe) while no poll is outstanding. protocol.md §3 and the .NET server:
// the data still queued (the Close message) is returned by the next poll, and the poll after that
// gets 204; a 404 instead means the Close was lost, and the JS client then treats the end as an
// error (and reconnects even though allowReconnect was false).

import assert from 'node:assert/strict';
import { JsonHubProtocol, NullLogger } from '@microsoft/signalr';
import { useServer } from './server.mjs';
import { MessageType, itConn, sleep } from './client.mjs';

const server = useServer([], { name: 'longpolling-raw' });
const RS = '\u001e';
const protocol = new JsonHubProtocol();

async function open(url) {
  const neg = await fetch(`${url}/negotiate?negotiateVersion=1`, { method: 'POST' });
  assert.equal(neg.status, 200, 'negotiate');
  const { connectionToken, connectionId } = await neg.json();
  const at = `${url}?id=${encodeURIComponent(connectionToken)}`;
  const first = await fetch(at);
  assert.equal(first.status, 200, 'the first poll of a new connection answers 200 at once');
  await first.arrayBuffer();
  const hs = await fetch(at, { method: 'POST', body: `{"protocol":"json","version":1}${RS}` });
  assert.equal(hs.status, 200, 'handshake POST');
  await hs.arrayBuffer();
  // Poll until the handshake response and the welcome message have arrived.
  let text = '';
  for (let i = 0; i < 5 && !text.includes('"welcome"'); i++) {
    const r = await fetch(`${at}&_=${Date.now()}`);
    assert.equal(r.status, 200, 'poll after the handshake');
    text += await r.text();
  }
  assert.ok(text.startsWith(`{}${RS}`), `handshake response first, got ${JSON.stringify(text.slice(0, 40))}`);
  assert.ok(text.includes('"welcome"'), 'welcome arrived');
  return { at, connectionId };
}

itConn('LongPolling/JSON: a Close queued while no poll is pending is returned by the next poll (not a 404)', server, async () => {
  const { at } = await open(server().url);
  const send = await fetch(at, { method: 'POST', body: `{"type":1,"target":"CloseMe","arguments":["raw close text",false]}${RS}` });
  assert.equal(send.status, 200, 'CloseMe POST');
  await send.arrayBuffer();
  await sleep(300); // the server has run CloseMe and ended the connection; no poll is outstanding
  const poll = await fetch(`${at}&_=${Date.now()}`);
  const body = await poll.text();
  assert.equal(poll.status, 200, `the next poll should return the queued Close message, got ${poll.status} ${JSON.stringify(body)}`);
  const messages = protocol.parseMessages(body, NullLogger.instance);
  const close = messages.find((m) => m.type === MessageType.Close);
  assert.ok(close, `a Close message in ${JSON.stringify(body)}`);
  assert.equal(close.error, 'raw close text');
  assert.ok(!close.allowReconnect, 'allowReconnect false');
  const after = await fetch(`${at}&_=${Date.now()}`);
  await after.arrayBuffer();
  assert.ok(after.status === 204 || after.status === 404, `after the Close the connection is over (204, or 404 once disposed), got ${after.status}`);
});

itConn('LongPolling/JSON: DELETE ends the connection: 202, and the pending poll completes with 204', server, async () => {
  const { at } = await open(server().url);
  const pending = fetch(`${at}&_=${Date.now()}`);
  await sleep(100);
  const del = await fetch(at, { method: 'DELETE' });
  await del.arrayBuffer();
  assert.equal(del.status, 202, 'DELETE answers 202 Accepted');
  const poll = await pending;
  await poll.arrayBuffer();
  assert.equal(poll.status, 204, 'the outstanding poll completes with 204');
});
