// The official client's side of signalr-client's e2e bench (signalr-client/benches/e2e.rs).
// Usage: node bench.mjs URL json|messagepack invoke|send|receive N [WARM_UP]
// Connects with normal negotiate over WebSockets, warms up with WARM_UP invokes (default 5000:
// V8 compiles the client's hot paths over its first ~3,000 calls), runs the measurement once and
// prints one JSON line: {"p50_us","p99_us"} for invoke, {"per_sec"} for send and receive.
import * as signalR from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';

const [url, protocol, mode, countText, warmUpText = '5000'] = process.argv.slice(2);
const count = Number(countText);
const warmUp = Number(warmUpText);
const builder = new signalR.HubConnectionBuilder()
  .withUrl(url, { transport: signalR.HttpTransportType.WebSockets })
  .configureLogging(signalR.LogLevel.Warning);
if (protocol === 'messagepack') builder.withHubProtocol(new MessagePackHubProtocol());
const connection = builder.build();
const payload = 'x'.repeat(100);
const now = () => process.hrtime.bigint();

await connection.start();
for (let i = 0; i < warmUp; i++) await connection.invoke('Echo', payload);

let result;
if (mode === 'invoke') {
  const times = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t0 = now();
    await connection.invoke('Echo', payload);
    times[i] = Number(now() - t0) / 1000;
  }
  times.sort();
  result = { p50_us: times[Math.floor(count * 0.5)], p99_us: times[Math.floor(count * 0.99)] };
} else if (mode === 'send') {
  const t0 = now();
  const sends = [];
  for (let i = 0; i < count; i++) sends.push(connection.send('Echo', payload));
  await Promise.all(sends);
  await connection.invoke('Echo', payload); // the barrier: every send was handled
  const seconds = Number(now() - t0) / 1e9;
  result = { per_sec: count / seconds };
} else if (mode === 'receive') {
  let seen = 0;
  let done;
  const all = new Promise((resolve) => { done = resolve; });
  connection.on('seq', () => { if (++seen === count) done(); });
  const t0 = now();
  await connection.invoke('Sequence', count);
  await all;
  const seconds = Number(now() - t0) / 1e9;
  result = { per_sec: count / seconds };
} else {
  throw new Error(`unknown mode ${mode}`);
}
console.log(JSON.stringify(result));
await connection.stop();
process.exit(0);
