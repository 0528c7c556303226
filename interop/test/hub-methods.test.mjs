// Every hub method of shared/design/hub-contract.md, driven by the official JS client, on every
// transport × protocol pair the client supports. One server (default flags) serves the file.

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { Subject } from '@microsoft/signalr';
import { useServer } from './server.mjs';
import { PAIRS, MessageType, itConn, nonce, sleep, waitUntil, within, settle, errorText } from './client.mjs';

const server = useServer([], { name: 'hub-methods' });

for (const pair of PAIRS) {
  describe(pair.name, () => {
    const opts = { transport: pair.transport, protocol: pair.protocol };
    const it = (name, body, o) => itConn(`${pair.name}: ${name}`, server, body, o);

    it('welcome(connectionId) arrives once, with the negotiated connection id', async (h) => {
      const c = await h.connect(server().url, opts);
      await waitUntil(() => c.welcomes.length > 0, 5000, 'welcome');
      await sleep(100);
      assert.equal(c.welcomes.length, 1, 'exactly one welcome');
      assert.equal(typeof c.connection.connectionId, 'string');
      assert.equal(c.welcomes[0], c.connection.connectionId);
    });

    it('Echo a string (unicode, quotes, record separator)', async (h) => {
      const c = await h.connect(server().url, opts);
      for (const s of ['hello', '', 'héllo wörld ✓ 😀', 'quote " backslash \\ newline \n tab \t', 'rs \u001e inside']) {
        assert.equal(await c.connection.invoke('Echo', s), s);
      }
    });

    it('Echo a number', async (h) => {
      const c = await h.connect(server().url, opts);
      for (const n of [42, 0, -7, -7.25, 3.5e10, 9007199254740991]) {
        assert.equal(await c.connection.invoke('Echo', n), n);
      }
    });

    it('Echo an object', async (h) => {
      const c = await h.connect(server().url, opts);
      const value = { name: 'x', n: 1, flag: true, nothing: null, nested: { list: [1, 'two', null, false], empty: {} } };
      assert.deepEqual(await c.connection.invoke('Echo', value), value);
    });

    it('Echo an array', async (h) => {
      const c = await h.connect(server().url, opts);
      const value = [1, 'two', { three: 3 }, [4, [5]], null, false, []];
      assert.deepEqual(await c.connection.invoke('Echo', value), value);
    });

    it('Echo null', async (h) => {
      const c = await h.connect(server().url, opts);
      assert.strictEqual(await c.connection.invoke('Echo', null), null);
    });

    if (pair.protocol === 'messagepack') {
      it('Echo binary (MessagePack bin)', async (h) => {
        const c = await h.connect(server().url, opts);
        const bytes = new Uint8Array([0, 1, 2, 0x1e, 0x80, 0xff]);
        const back = await c.connection.invoke('Echo', bytes);
        assert.ok(back instanceof Uint8Array, `expected Uint8Array, got ${Object.prototype.toString.call(back)}`);
        assert.deepEqual([...back], [...bytes]);
      });
    }

    it('Add', async (h) => {
      const c = await h.connect(server().url, opts);
      assert.equal(await c.connection.invoke('Add', 2, 3), 5);
      assert.equal(await c.connection.invoke('Add', -10, 4), -6);
      assert.equal(await c.connection.invoke('Add', 2 ** 40, 1), 2 ** 40 + 1);
    });

    it('Counter streams 0..n-1 then completes', async (h) => {
      const c = await h.connect(server().url, opts);
      const items = [];
      await within(
        new Promise((resolve, reject) => {
          c.connection.stream('Counter', 5, 10).subscribe({
            next: (v) => items.push(v),
            complete: resolve,
            error: reject,
          });
        }),
        5000,
        'Counter(5, 10) completion',
      );
      assert.deepEqual(items, [0, 1, 2, 3, 4]);
    });

    it('Counter cancelled after 3 items: server stops, connection still works', async (h) => {
      const c = await h.connect(server().url, opts);
      const items = [];
      let subscription;
      let disposedAt = 0;
      let streamError = null;
      await within(
        new Promise((resolve) => {
          subscription = c.connection.stream('Counter', 1000, 30).subscribe({
            next: (v) => {
              items.push(v);
              if (items.length === 3) {
                subscription.dispose();
                disposedAt = Date.now();
                resolve();
              }
            },
            complete: resolve,
            error: (e) => {
              streamError = e;
              resolve();
            },
          });
        }),
        5000,
        'three Counter items',
      );
      assert.equal(streamError, null, `stream failed: ${errorText(streamError)}`);
      assert.deepEqual(items, [0, 1, 2]);
      // Which invocation id did the stream use? (the first StreamItem the server sent)
      const first = c.received(MessageType.StreamItem)[0];
      assert.ok(first, 'saw StreamItem messages on the wire');
      const id = first.invocationId;
      await sleep(900); // 30 more items' worth at 30 ms each if the server kept going
      const late = c.inbound.filter(
        (e) => e.message.type === MessageType.StreamItem && e.message.invocationId === id && e.at > disposedAt + 300,
      );
      assert.equal(late.length, 0, `server kept streaming after CancelInvocation: ${late.length} StreamItems more than 300 ms after the cancel`);
      assert.equal(items.length, 3, 'no more items delivered after dispose');
      assert.equal(await c.connection.invoke('Echo', 'still alive'), 'still alive');
      assert.equal(c.connection.state, 'Connected');
      assert.equal(c.closes.length, 0);
    });

    it('Sum of an uploaded stream 1..10 is 55', async (h) => {
      const c = await h.connect(server().url, opts);
      const subject = new Subject();
      const result = c.connection.invoke('Sum', subject);
      for (let i = 1; i <= 10; i++) subject.next(i);
      subject.complete();
      assert.equal(await within(result, 5000, 'Sum result'), 55);
    });

    it('Sum of an empty uploaded stream is 0', async (h) => {
      const c = await h.connect(server().url, opts);
      const subject = new Subject();
      const result = c.connection.invoke('Sum', subject);
      await sleep(20);
      subject.complete();
      assert.equal(await within(result, 5000, 'Sum result'), 0);
    });

    it('SendToCaller calls the method on the caller and returns "sent"', async (h) => {
      const got = [];
      const c = await h.connect(server().url, { ...opts, handlers: { onPayload: (p) => { got.push(p); } } });
      const payload = { k: nonce(), list: [1, 2, 3] };
      assert.equal(await c.connection.invoke('SendToCaller', 'onPayload', payload), 'sent');
      await waitUntil(() => got.length > 0, 5000, 'onPayload call');
      assert.deepEqual(got, [payload]);
    });

    it('Broadcast reaches both connections and returns the connection count', async (h) => {
      const gotA = [];
      const gotB = [];
      const a = await h.connect(server().url, { ...opts, label: 'A', handlers: { bcast: (p) => { gotA.push(p); } } });
      await h.connect(server().url, { ...opts, label: 'B', handlers: { bcast: (p) => { gotB.push(p); } } });
      const payload = `hello-${nonce()}`;
      const n = await a.connection.invoke('Broadcast', 'bcast', payload);
      assert.equal(typeof n, 'number');
      assert.ok(n >= 2, `Broadcast returned ${n}, expected at least 2 connections`);
      await waitUntil(() => gotA.includes(payload) && gotB.includes(payload), 5000, 'broadcast at A and B');
    });

    it('groups: SendToGroup reaches members only; after LeaveGroup nothing arrives', async (h) => {
      const gotA = [];
      const gotB = [];
      const a = await h.connect(server().url, { ...opts, label: 'A', handlers: { grp: (p) => { gotA.push(p); } } });
      const b = await h.connect(server().url, { ...opts, label: 'B', handlers: { grp: (p) => { gotB.push(p); } } });
      const group = `g-${nonce()}`;
      assert.equal(await a.connection.invoke('JoinGroup', group), group);
      const p1 = `one-${nonce()}`;
      assert.equal(await b.connection.invoke('SendToGroup', group, 'grp', p1), 'sent');
      await waitUntil(() => gotA.includes(p1), 5000, 'group message at the member');
      await sleep(300);
      assert.deepEqual(gotB, [], 'non-member B received a group message');
      assert.deepEqual(gotA, [p1]);
      assert.equal(await a.connection.invoke('LeaveGroup', group), group);
      const p2 = `two-${nonce()}`;
      assert.equal(await b.connection.invoke('SendToGroup', group, 'grp', p2), 'sent');
      await sleep(400);
      assert.deepEqual(gotA, [p1], 'A received a group message after LeaveGroup');
      assert.deepEqual(gotB, []);
    });

    it('Fail rejects with the message; connection stays up', async (h) => {
      const c = await h.connect(server().url, opts);
      const text = `deliberate failure ${nonce()}`;
      const r = await settle(c.connection.invoke('Fail', text));
      assert.equal(r.ok, false, 'Fail must reject');
      assert.ok(errorText(r.error).includes(text), `error ${JSON.stringify(errorText(r.error))} should contain ${JSON.stringify(text)}`);
      assert.equal(await c.connection.invoke('Add', 1, 1), 2);
      assert.equal(c.closes.length, 0);
    });

    it('unknown method rejects naming it; connection stays usable', async (h) => {
      const c = await h.connect(server().url, opts);
      const name = `NoSuchMethod_${nonce()}`;
      const r = await settle(c.connection.invoke(name, 1, 2));
      assert.equal(r.ok, false, 'unknown method must reject');
      assert.ok(errorText(r.error).includes(name), `error ${JSON.stringify(errorText(r.error))} should name ${name}`);
      assert.equal(await c.connection.invoke('Echo', 'after'), 'after');
      assert.equal(c.closes.length, 0);
    });

    it("method names are case-sensitive per the contract ('echo' is unknown)", async (h) => {
      const c = await h.connect(server().url, opts);
      const r = await settle(c.connection.invoke('echo', 'x'));
      assert.equal(r.ok, false, "'echo' (lower case) must not resolve to 'Echo'");
      assert.ok(errorText(r.error).includes('echo'), `error ${JSON.stringify(errorText(r.error))} should name 'echo'`);
      assert.equal(await c.connection.invoke('Echo', 'after'), 'after');
    });

    it('AskClient returns the value the client handler returned', async (h) => {
      const seen = [];
      const c = await h.connect(server().url, {
        ...opts,
        handlers: {
          askMe: (arg) => {
            seen.push(arg);
            return { answer: arg.q + 41, echo: arg };
          },
        },
      });
      const arg = { q: 1, tag: nonce() };
      assert.deepEqual(await c.connection.invoke('AskClient', 'askMe', arg), { answer: 42, echo: arg });
      assert.deepEqual(seen, [arg]);
      // A handler returning a promise answers too.
      c.connection.on('askLater', async (x) => {
        await sleep(50);
        return `later:${x}`;
      });
      assert.equal(await c.connection.invoke('AskClient', 'askLater', 'y'), 'later:y');
    });

    it('AskClient without a client handler rejects (does not hang)', async (h) => {
      const c = await h.connect(server().url, opts);
      const r = await settle(within(c.connection.invoke('AskClient', `nobody_${nonce()}`, 1), 5000, 'AskClient settles'));
      assert.equal(r.ok, false, 'AskClient must fail when the client gives no result');
      assert.ok(!/timed out/.test(errorText(r.error)), `AskClient hung: ${errorText(r.error)}`);
      assert.equal(await c.connection.invoke('Echo', 1), 1);
    });

    it('NoResult completes without a value', async (h) => {
      const c = await h.connect(server().url, opts);
      const r = await c.connection.invoke('NoResult');
      assert.ok(r === undefined || r === null, `expected no result, got ${JSON.stringify(r)}`);
      // On the wire: a void Completion (no result) for JSON and MessagePack alike.
      const completion = c.received(MessageType.Completion).at(-1);
      assert.ok(completion, 'a Completion arrived');
      assert.equal(completion.error, undefined);
      assert.equal(completion.result, undefined, 'a void Completion, not a null result');
    });

    it('GetConnectionId equals connection.connectionId and the welcome id', async (h) => {
      const c = await h.connect(server().url, opts);
      const id = await c.connection.invoke('GetConnectionId');
      assert.equal(id, c.connection.connectionId);
      await waitUntil(() => c.welcomes.length > 0, 5000, 'welcome');
      assert.equal(c.welcomes[0], id);
    });

    it('Sequence(100) sends seq(0..99) in order, then returns 100', async (h) => {
      const seq = [];
      const c = await h.connect(server().url, { ...opts, handlers: { seq: (i) => { seq.push(i); } } });
      assert.equal(await c.connection.invoke('Sequence', 100), 100);
      // The seq calls are sent before the completion on the same connection.
      assert.deepEqual(seq, Array.from({ length: 100 }, (_, i) => i));
    });
  });
}
