// Starts and stops the `signalr-testserver` binary for the interop tests.
//
// The binary is `$SIGNALR_TESTSERVER_BIN` if set, else `<repo>/target/debug/signalr-testserver`
// (resolved relative to this file, so the tests work from any cwd). Every server is started with
// `--port 0`; its first stdout line must be `listening on http://127.0.0.1:PORT/hub`.
// Server stderr is kept in memory (and in a log file under the OS temp dir) and is only shown when
// a test fails. Every child is killed when its test file ends, and on process exit as a last resort.
//
// Run directly by `node --test` (it lives in test/), this file runs its own self-test: start a
// server, check the URL, stop it and check that no process is left behind.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, after } from 'node:test';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..');
export const LOG_DIR = process.env.SIGNALR_INTEROP_LOG_DIR || path.join(tmpdir(), 'signalr-interop-logs');

const STARTUP_TIMEOUT_MS = 20_000;
const LISTENING = /^listening on (http:\/\/127\.0\.0\.1:(\d+)(\/\S*))\s*$/;

/** Every child started by this process and not yet reaped. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    for (const child of live) {
      try { child.kill('SIGKILL'); } catch { /* already gone */ }
    }
    process.exit(130);
  });
}

export function serverBinary() {
  return process.env.SIGNALR_TESTSERVER_BIN || path.join(REPO_ROOT, 'target', 'debug', 'signalr-testserver');
}

function safeName(s) {
  return s.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 80);
}

/**
 * A running test server.
 * - `url`: the hub URL printed by the server (`http://127.0.0.1:PORT/hub`)
 * - `origin`: `http://127.0.0.1:PORT`
 * - `stderrTail(n)`: the last n lines the server wrote to stderr
 * - `admin(path)`: POST `/admin/<path>` (needs `--admin`), returns the parsed JSON body
 * - `stop()`: SIGTERM, then SIGKILL after 3 s; resolves when the process is gone
 */
export class TestServer {
  constructor(child, url, port, flags, logPath, stderrLines) {
    this.child = child;
    this.pid = child.pid;
    this.url = url;
    this.port = port;
    this.origin = new URL(url).origin;
    this.flags = flags;
    this.logPath = logPath;
    this._stderr = stderrLines;
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
      else child.once('exit', (code, signal) => resolve({ code, signal }));
    });
  }

  get running() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  stderrTail(n = 60) {
    return this._stderr.slice(-n).join('\n');
  }

  async admin(pathAndQuery) {
    const res = await fetch(`${this.origin}/admin/${pathAndQuery}`, { method: 'POST' });
    const text = await res.text();
    if (!res.ok) throw new Error(`POST /admin/${pathAndQuery} -> ${res.status}: ${text}`);
    try { return JSON.parse(text); } catch { return text; }
  }

  async stop() {
    if (this.running) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => { if (this.running) this.child.kill('SIGKILL'); }, 3000);
      await this.exited;
      clearTimeout(timer);
    }
    live.delete(this.child);
    return this.exited;
  }
}

/**
 * Starts the server with `--port 0` plus `flags` and resolves once it has printed its URL.
 * Rejects (and kills the child) if the line does not come within 20 s, if the first line is
 * something else, or if the process exits first.
 */
export async function startServer(flags = [], { name = 'server' } = {}) {
  const bin = serverBinary();
  if (!existsSync(bin)) {
    throw new Error(`test server binary not found at ${bin}; build it with \`cargo build -p signalr-testserver\` or set SIGNALR_TESTSERVER_BIN`);
  }
  mkdirSync(LOG_DIR, { recursive: true });
  const logPath = path.join(LOG_DIR, `${safeName(name)}-${process.pid}-${Date.now()}.log`);
  const log = createWriteStream(logPath);
  log.write(`$ ${bin} --port 0 ${flags.join(' ')}\n`);

  const args = ['--port', '0', ...flags];
  const child = spawn(bin, args, {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' },
  });
  live.add(child);
  child.once('exit', () => live.delete(child));

  const stderrLines = [];
  let stderrPartial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    log.write(chunk);
    const parts = (stderrPartial + chunk).split('\n');
    stderrPartial = parts.pop();
    stderrLines.push(...parts);
    if (stderrLines.length > 2000) stderrLines.splice(0, stderrLines.length - 1000);
  });
  child.once('exit', () => log.end());

  const result = await new Promise((resolve, reject) => {
    let stdoutBuf = '';
    let firstLine = null;
    const fail = (msg) => {
      cleanup();
      try { child.kill('SIGKILL'); } catch { /* gone */ }
      reject(new Error(`${msg}\n--- server stderr (${logPath}) ---\n${stderrLines.slice(-40).join('\n')}${stderrPartial}`));
    };
    const timer = setTimeout(() => fail(`signalr-testserver ${args.join(' ')}: no "listening on" line within ${STARTUP_TIMEOUT_MS} ms`), STARTUP_TIMEOUT_MS);
    const onData = (chunk) => {
      stdoutBuf += chunk;
      log.write(`[stdout] ${chunk}`);
      const nl = stdoutBuf.indexOf('\n');
      if (nl < 0 || firstLine !== null) return;
      firstLine = stdoutBuf.slice(0, nl).replace(/\r$/, '');
      const m = LISTENING.exec(firstLine);
      if (!m) {
        fail(`the first stdout line must be "listening on http://127.0.0.1:PORT/hub", got ${JSON.stringify(firstLine)}`);
        return;
      }
      cleanup();
      // Keep draining stdout so the child never blocks on a full pipe.
      child.stdout.on('data', (c) => log.write(`[stdout] ${c}`));
      resolve({ url: m[1], port: Number(m[2]) });
    };
    const onExit = (code, signal) => fail(`signalr-testserver ${args.join(' ')} exited (code ${code}, signal ${signal}) before printing its URL`);
    const onError = (err) => fail(`cannot spawn ${bin}: ${err.message}`);
    function cleanup() {
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
    }
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', onData);
    child.once('exit', onExit);
    child.once('error', onError);
  });

  return new TestServer(child, result.url, result.port, flags, logPath, stderrLines);
}

/**
 * Registers `before`/`after` hooks in the current suite (or file) that start one server with
 * `flags` for all its tests and stop it afterwards. Returns a getter for the running server.
 */
export function useServer(flags = [], { name } = {}) {
  let server = null;
  before(async () => {
    server = await startServer(flags, { name: name || flags.join(' ') || 'default' });
  });
  after(async () => {
    if (server) await server.stop();
  });
  return () => {
    if (!server) throw new Error('server not started (before() hook failed?)');
    return server;
  };
}

/** True if a process with this pid exists (and is not a zombie we could still reap). */
export function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

// ---- self-test when node --test runs this file directly -------------------------------------
const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const { test } = await import('node:test');
  const assert = (await import('node:assert/strict')).default;
  test('server helper: starts the server on a free port and leaves no process behind', { timeout: 30_000 }, async () => {
    const a = await startServer([], { name: 'selftest-a' });
    const b = await startServer([], { name: 'selftest-b' });
    try {
      assert.match(a.url, /^http:\/\/127\.0\.0\.1:\d+\/hub$/);
      assert.notEqual(a.port, 0);
      assert.notEqual(a.port, b.port, 'two servers with --port 0 must get different ports');
      const res = await fetch(`${a.url}/negotiate?negotiateVersion=1`, { method: 'POST' });
      assert.equal(res.status, 200, 'negotiate answers 200');
      const body = await res.json();
      assert.equal(typeof body.connectionId, 'string');
    } finally {
      await a.stop();
      await b.stop();
    }
    assert.equal(a.running, false);
    assert.equal(pidAlive(a.pid), false, `server pid ${a.pid} still alive after stop()`);
    assert.equal(pidAlive(b.pid), false, `server pid ${b.pid} still alive after stop()`);
  });
}
