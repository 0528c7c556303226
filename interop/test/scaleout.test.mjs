// Two test-server instances on one redis-server (Debian's package, started on a free port,
// persistence off): the official JS client on one instance and ours (the `peer` example,
// target/debug/peer, driven by JSON lines) on the other exchange group messages and
// broadcasts both ways, over the Redis backplane. Skipped locally when redis-server or the
// peer binary is missing; a failure under CI=true.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import * as signalR from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';
import { startServer, REPO_ROOT } from './server.mjs';
import { findProgram, freePort, startProgram } from './programs.mjs';

const redisServer = findProgram('redis-server', 'redis-server');
const PEER = process.env.SIGNALR_PEER_BIN || path.join(REPO_ROOT, 'target', 'debug', 'peer');
let skip = redisServer ? false : 'redis-server is not installed (apt-get install -y redis-server)';
if (!skip && !existsSync(PEER)) {
  const hint = `${PEER} is missing (cargo build -p examples --bin peer)`;
  if (process.env.CI === 'true') throw new Error(`${hint}; under CI=true it may not be skipped`);
  skip = hint;
}

/** Our client as a child process: `call(method, ...args)`, `next(event)`. */
function startPeer(url, { messagepack = false, on = [] } = {}) {
  const args = [url, ...(messagepack ? ['--messagepack'] : []), ...on.flatMap((m) => ['--on', m])];
  const child = spawn(PEER, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const queue = [];
  const waiting = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const event = JSON.parse(line);
    const i = waiting.findIndex((w) => w.names.includes(event.event));
    if (i >= 0) waiting.splice(i, 1)[0].resolve(event);
    else queue.push(event);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  /** The next event named one of `names` (a string or an array). */
  const next = (names, ms = 10_000) => {
    names = [].concat(names);
    const i = queue.findIndex((e) => names.includes(e.event));
    if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const waiter = { names };
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(waiter), 1);
        reject(new Error(`peer: no ${names.join(' or ')} within ${ms} ms`));
      }, ms);
      waiter.resolve = (e) => { clearTimeout(timer); resolve(e); };
      waiting.push(waiter);
    });
  };
  return {
    next,
    async call(method, ...callArgs) {
      child.stdin.write(`${JSON.stringify({ invoke: method, args: callArgs })}\n`);
      const answer = await next(['result', 'error']);
      if (answer.event === 'error') throw new Error(answer.error);
      return answer.value;
    },
    async stop() {
      child.stdin.end();
      await exited;
    },
  };
}

describe('the JS client and ours on two instances over Redis', { skip }, () => {
  const state = {};
  before(async () => {
    if (skip) return;
    const port = await freePort();
    state.redis = await startProgram(
      redisServer,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      port,
      { name: 'redis' },
    );
    const flags = (name) => ['--redis', `redis://127.0.0.1:${port}`, '--server-name', name];
    state.servers = [await startServer(flags('js-side')), await startServer(flags('rust-side'))];
  });
  after(async () => {
    for (const s of state.servers || []) await s.stop();
    if (state.redis) await state.redis.stop();
  });

  for (const messagepack of [false, true]) {
    it(`groups and broadcasts both ways (${messagepack ? 'MessagePack' : 'JSON'})`, async () => {
      const builder = new signalR.HubConnectionBuilder().withUrl(state.servers[0].url);
      if (messagepack) builder.withHubProtocol(new MessagePackHubProtocol());
      const js = builder.configureLogging(signalR.LogLevel.Error).build();
      const got = [];
      let wake = () => {};
      const arrived = (name) => new Promise((resolve) => {
        const check = () => (got.some((g) => g[0] === name) ? resolve() : (wake = check));
        check();
      });
      for (const m of ['fromRust', 'rustAll']) {
        js.on(m, (arg) => { got.push([m, arg]); wake(); });
      }
      await js.start();
      const peer = startPeer(state.servers[1].url, { messagepack: !messagepack, on: ['fromJs', 'jsAll'] });
      try {
        await peer.next('connected');
        assert.equal(await js.invoke('GetServerName'), 'js-side');
        assert.equal(await peer.call('GetServerName'), 'rust-side');
        await js.invoke('JoinGroup', 'mix');
        await peer.call('JoinGroup', 'mix');

        await js.invoke('SendToGroup', 'mix', 'fromJs', { n: 1, s: 'héllo' });
        assert.deepEqual((await peer.next('fromJs')).arg, { n: 1, s: 'héllo' });
        await peer.call('SendToGroup', 'mix', 'fromRust', [1, 2, 3]);
        await arrived('fromRust');
        assert.deepEqual(got.find((g) => g[0] === 'fromRust')[1], [1, 2, 3]);

        await js.invoke('Broadcast', 'jsAll', 'from js');
        assert.equal((await peer.next('jsAll')).arg, 'from js');
        await peer.call('Broadcast', 'rustAll', 42);
        await arrived('rustAll');
        assert.equal(got.find((g) => g[0] === 'rustAll')[1], 42);
        // Exactly once each.
        assert.equal(got.filter((g) => g[0] === 'fromRust').length, 1);
        assert.equal(got.filter((g) => g[0] === 'rustAll').length, 1);
      } finally {
        await peer.stop();
        await js.stop();
      }
    });
  }
});
