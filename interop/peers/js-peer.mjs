// A peer for signalr-client's cross-client test: the official JavaScript client joins group
// "mixed", answers every "toJs" call by sending "toRust" to the group, and answers broadcasts
// of "hello" by broadcasting "helloBack". Usage: node js-peer.mjs URL json|messagepack
// It prints "ready <connectionId>" once joined, then one line per message, and exits when its
// stdin closes (so the Rust test that started it never leaves it behind).
import * as signalR from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';

const [url, protocol = 'json'] = process.argv.slice(2);
const builder = new signalR.HubConnectionBuilder().withUrl(url).configureLogging(signalR.LogLevel.Warning);
if (protocol === 'messagepack') builder.withHubProtocol(new MessagePackHubProtocol());
const connection = builder.build();

connection.on('toJs', async (text) => {
  console.log(`toJs ${text}`);
  await connection.invoke('SendToGroup', 'mixed', 'toRust', `js got: ${text}`);
});
connection.on('hello', async (from) => {
  console.log(`hello ${from}`);
  await connection.invoke('Broadcast', 'helloBack', { from: 'js', to: from });
});

await connection.start();
await connection.invoke('JoinGroup', 'mixed');
console.log(`ready ${connection.connectionId}`);

process.stdin.resume();
process.stdin.on('end', async () => {
  await connection.stop();
  process.exit(0);
});
