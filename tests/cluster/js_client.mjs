// A JS SDK client driven over stdin/stdout (JSON lines) by the cluster tests.
// argv: <server url> <api key, or "token:<jwt>">. Commands: {"op":"subscribe"|"publish"|"send"|"close", ...}.
// Events printed: {"event":"connected"|"presence"|"message"|"direct"|"ack"|"error"|"closed",...}
import { createInterface } from "node:readline";
import WebSocket from "ws";
import { SignallingClient } from "@metered-ca/realtime";

const [url, apiKey] = process.argv.slice(2);
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const credentials = apiKey.startsWith("token:")
  ? { tokenProvider: async () => apiKey.slice("token:".length) }
  : { apiKey };
const client = new SignallingClient({
  url,
  ...credentials,
  webSocketFactory: (target) => new WebSocket(target),
});
client.on("presence", (e) => print({ event: "presence", channel: e.channel, joined: e.joined, left: e.left }));
client.on("message", (e) => print({ event: "message", ...e }));
client.on("direct", (e) => print({ event: "direct", ...e }));
client.on("connected", (e) => print({ event: "connected", peerId: e.peerId }));
client.on("disconnected", (e) => print({ event: "disconnected", code: e.code }));

await client.connect();

for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  try {
    if (command.op === "subscribe") await client.subscribe(command.channel);
    else if (command.op === "publish") await client.publish(command.channel, command.data);
    else if (command.op === "send") await client.send(command.to, command.data);
    else if (command.op === "close") break;
    print({ event: "ack", id: command.id });
  } catch (error) {
    print({ event: "error", id: command.id, code: error.code ?? String(error) });
  }
}
await client.close();
print({ event: "closed" });
