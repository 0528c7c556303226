// Helpers around the official @microsoft/signalr client for the interop tests.
//
// - PAIRS: every transport × protocol pair the JS client supports (SSE is text-only).
// - itConn(): a test whose connections are always stopped (even on failure or timeout), with its
//   own deadline so a broken server fails fast, and which dumps the client log and the server's
//   stderr when it fails.
// - Harness.connect(): builds and starts a HubConnection with a tapped protocol, so tests can see
//   every message the server sent (types 1-9, as parsed by the official protocol), and records
//   welcome/close/reconnecting/reconnected events.
//
// Run directly by `node --test` (it lives in test/), this file checks that the installed client
// packages are the versions pinned in package.json.

import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  HubConnectionBuilder,
  HttpTransportType,
  JsonHubProtocol,
  LogLevel,
  MessageType,
} from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';

export { HttpTransportType, MessageType };

export const PAIRS = [
  { name: 'WebSockets/JSON', transport: HttpTransportType.WebSockets, protocol: 'json' },
  { name: 'WebSockets/MessagePack', transport: HttpTransportType.WebSockets, protocol: 'messagepack' },
  { name: 'ServerSentEvents/JSON', transport: HttpTransportType.ServerSentEvents, protocol: 'json' },
  { name: 'LongPolling/JSON', transport: HttpTransportType.LongPolling, protocol: 'json' },
  { name: 'LongPolling/MessagePack', transport: HttpTransportType.LongPolling, protocol: 'messagepack' },
];

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A random suffix so names used on a shared server never collide between tests. */
export function nonce() {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}

/** Rejects with `what` if `promise` does not settle within `ms`. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `cond` every 10 ms until it is truthy; fails after `ms` with `what` (a string or a function). */
export async function waitUntil(cond, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await sleep(10);
  }
}

/** Settles to {ok, value} / {ok:false, error}; for asserting that something fails. */
export async function settle(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

export function errorText(e) {
  if (e === undefined || e === null) return String(e);
  if (e instanceof Error) return e.message;
  return String(e);
}

/** A logger for the JS client that keeps lines in memory (shown only when a test fails). */
class MemoryLogger {
  constructor(lines, label) {
    this.lines = lines;
    this.label = label;
  }
  log(level, message) {
    this.lines.push(`${new Date().toISOString().slice(11, 23)} [${this.label}] ${LogLevel[level]}: ${message}`);
  }
}

/** Wraps a protocol's parseMessages so every parsed inbound message is also pushed to `sink`. */
function tapProtocol(protocol, sink) {
  const parse = protocol.parseMessages.bind(protocol);
  protocol.parseMessages = (input, logger) => {
    const messages = parse(input, logger);
    for (const m of messages) sink.push({ at: Date.now(), message: m });
    return messages;
  };
  return protocol;
}

export function makeProtocol(name) {
  if (name === 'json') return new JsonHubProtocol();
  if (name === 'messagepack') return new MessagePackHubProtocol();
  throw new Error(`unknown protocol ${name}`);
}

/** Per-test state: the connections to stop and the log to dump on failure. */
export class Harness {
  constructor(testName) {
    this.testName = testName;
    this.conns = [];
    this.logLines = [];
    this.count = 0;
  }

  note(line) {
    this.logLines.push(`${new Date().toISOString().slice(11, 23)} [test] ${line}`);
  }

  /**
   * Builds (and unless `start: false`, starts) a connection.
   * options: transport, protocol ('json'|'messagepack'), skipNegotiation, reconnect (array of
   * delays), stateful (true or {bufferSize}), serverTimeout, keepAlive, accessTokenFactory,
   * handlers ({name: fn}), start.
   * Returns a Conn: { connection, inbound, welcomes, closes, reconnecting, reconnected, label }.
   */
  async connect(url, options = {}) {
    const label = options.label || `c${++this.count}`;
    const inbound = [];
    const protocol = tapProtocol(makeProtocol(options.protocol || 'json'), inbound);
    const httpOptions = {
      logger: new MemoryLogger(this.logLines, label),
      logMessageContent: false,
    };
    if (options.transport !== undefined) httpOptions.transport = options.transport;
    if (options.skipNegotiation) httpOptions.skipNegotiation = true;
    if (options.accessTokenFactory) httpOptions.accessTokenFactory = options.accessTokenFactory;
    let builder = new HubConnectionBuilder()
      .withUrl(url, httpOptions)
      .withHubProtocol(protocol)
      .configureLogging(new MemoryLogger(this.logLines, label));
    if (options.reconnect) builder = builder.withAutomaticReconnect(options.reconnect);
    if (options.stateful) builder = builder.withStatefulReconnect(options.stateful === true ? undefined : options.stateful);
    if (options.serverTimeout) builder = builder.withServerTimeout(options.serverTimeout);
    if (options.keepAlive) builder = builder.withKeepAliveInterval(options.keepAlive);
    const connection = builder.build();

    const conn = {
      label,
      connection,
      inbound,
      welcomes: [],
      closes: [],
      reconnecting: [],
      reconnected: [],
      /** Inbound messages of the given MessageType. */
      received(type) {
        return inbound.filter((e) => e.message.type === type).map((e) => e.message);
      },
      /** Client-method invocations the server sent for `target` (case-insensitive), args only. */
      calls(target) {
        const t = target.toLowerCase();
        return inbound
          .filter((e) => e.message.type === MessageType.Invocation && String(e.message.target).toLowerCase() === t)
          .map((e) => e.message.arguments);
      },
    };
    connection.on('welcome', (id) => {
      conn.welcomes.push(id);
    });
    connection.onclose((error) => {
      this.note(`${label} onclose(${error ? errorText(error) : ''})`);
      conn.closes.push(error ?? null);
    });
    connection.onreconnecting((error) => {
      this.note(`${label} onreconnecting(${error ? errorText(error) : ''})`);
      conn.reconnecting.push(error ?? null);
    });
    connection.onreconnected((id) => {
      this.note(`${label} onreconnected(${id})`);
      conn.reconnected.push(id);
    });
    for (const [name, fn] of Object.entries(options.handlers || {})) connection.on(name, fn);
    this.conns.push(conn);
    if (options.start !== false) {
      await within(connection.start(), 8000, `${label}.start()`);
      this.note(`${label} started, connectionId=${connection.connectionId}`);
    }
    return conn;
  }

  async cleanup() {
    await Promise.all(
      this.conns.map(async (c) => {
        try {
          await within(c.connection.stop(), 3000, `${c.label}.stop()`);
        } catch (e) {
          this.note(`${c.label} stop failed: ${errorText(e)}`);
        }
      }),
    );
  }
}

/**
 * Declares a test with a harness. `getServer` (optional) returns the TestServer whose stderr is
 * dumped on failure. The body gets (h, t). `timeout` is the test's own deadline (default 10 s);
 * node's timeout is a backstop 5 s later.
 */
export function itConn(name, getServer, body, { timeout = 10_000, skip } = {}) {
  return test(name, { timeout: timeout + 5000, skip }, async (t) => {
    const h = new Harness(name);
    let failed = null;
    try {
      await within(Promise.resolve().then(() => body(h, t)), timeout, `test "${name}"`);
    } catch (e) {
      failed = e;
    } finally {
      await h.cleanup();
    }
    if (failed) {
      const server = getServer ? safeCall(getServer) : null;
      const dump = [
        `---- FAILED: ${name}`,
        `---- client log (last 60 lines)`,
        ...h.logLines.slice(-60),
      ];
      if (server) {
        dump.push(`---- server stderr (last 40 lines; full log: ${server.logPath})`, server.stderrTail(40));
        if (!server.running) dump.push('---- the server process is no longer running');
      }
      process.stderr.write(`${dump.join('\n')}\n`);
      throw failed;
    }
  });
}

function safeCall(fn) {
  try {
    return fn();
  } catch {
    return null;
  }
}

// ---- self-test when node --test runs this file directly -------------------------------------
const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const assert = (await import('node:assert/strict')).default;
  test('client packages: installed versions match the exact pins in package.json', () => {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const pkg = JSON.parse(readFileSync(path.join(here, '..', 'package.json'), 'utf8'));
    for (const name of ['@microsoft/signalr', '@microsoft/signalr-protocol-msgpack', 'eventsource']) {
      const pinned = pkg.dependencies[name];
      assert.match(pinned, /^\d+\.\d+\.\d+$/, `${name} must be pinned to an exact version`);
      const installed = JSON.parse(readFileSync(path.join(here, '..', 'node_modules', name, 'package.json'), 'utf8')).version;
      assert.equal(installed, pinned, `${name}: installed ${installed}, pinned ${pinned} (run npm ci in interop/)`);
    }
  });
}
