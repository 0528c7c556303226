// Starting the real programs the field tests put in front of the test server (HAProxy,
// tinyproxy, redis-server), from Debian's packages, on free ports, and stopping them when the
// test file ends.
//
// findProgram() returns null locally when a program is missing (its tests are skipped with a
// message saying how to install it); under CI=true a missing program is an error: CI never
// skips a field test.
//
// Run directly by `node --test` (it lives in test/), this file checks that free ports are free
// and that a started program is stopped.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync, createWriteStream, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  }
});

/** The path of `name` (Debian package `pkg`), or null when a local run should skip. */
export function findProgram(name, pkg) {
  const dirs = (process.env.PATH || '').split(path.delimiter).concat(['/usr/sbin', '/usr/local/sbin', '/sbin']);
  for (const dir of dirs) {
    const p = path.join(dir, name);
    if (dir && existsSync(p)) return p;
  }
  const hint = `${name} is not installed: apt-get install -y ${pkg} (Debian's package)`;
  if (process.env.CI === 'true') throw new Error(`${hint}; under CI=true a field test may not be skipped`);
  process.stderr.write(`# skipping: ${hint}\n`);
  return null;
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, child, logPath, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`exited (${child.exitCode}) before listening:\n${readFileSync(logPath, 'utf8')}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`did not listen on ${port} within ${ms} ms:\n${readFileSync(logPath, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts `program` with `args`, waits for `port`; `stop()` kills it (SIGKILL, as a crash). */
export async function startProgram(program, args, port, { name = path.basename(program) } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), `signalr-${name}-`));
  const logPath = path.join(dir, 'out.log');
  const log = createWriteStream(logPath);
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await waitForPort(port, child, logPath);
  return {
    port,
    logPath,
    log: () => readFileSync(logPath, 'utf8'),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      live.delete(child);
    },
  };
}

/**
 * HAProxy on a free port in front of `servers` (`127.0.0.1:PORT` strings), round-robin, with
 * cookie affinity (`cookie SRV insert indirect nocache`) unless `affinity` is false.
 */
export async function startHaproxy(haproxy, servers, { affinity = true } = {}) {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'signalr-haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  const lines = [
    'global', '    maxconn 2000',
    'defaults', '    mode http', '    timeout connect 5s', '    timeout client 120s', '    timeout server 120s', '    timeout tunnel 1h',
    `frontend hub`, `    bind 127.0.0.1:${port}`, '    default_backend instances',
    'backend instances', '    balance roundrobin',
  ];
  if (affinity) lines.push('    cookie SRV insert indirect nocache');
  servers.forEach((s, i) => lines.push(`    server s${i} ${s}${affinity ? ` cookie s${i}` : ''}`));
  writeFileSync(cfg, `${lines.join('\n')}\n`);
  const running = await startProgram(haproxy, ['-db', '-f', cfg], port, { name: 'haproxy' });
  return { ...running, url: `http://127.0.0.1:${port}/hub` };
}

// ---- self-test when node --test runs this file directly -------------------------------------
const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const { test } = await import('node:test');
  const assert = (await import('node:assert/strict')).default;
  test('programs helper: a free port can be listened on', async () => {
    const port = await freePort();
    const srv = net.createServer();
    await new Promise((resolve, reject) => { srv.once('error', reject); srv.listen(port, '127.0.0.1', resolve); });
    await new Promise((resolve) => srv.close(resolve));
    assert.ok(port > 0);
  });
}
