// One official-SDK client for the REST tests: connects (pk key or token), subscribes to one
// channel, and prints every event as a JSON line on stdout. Closing stdin closes the client.
//   node sdk_listener.mjs <ws url> '<{"apiKey"|"token", "channel", "includeSenderMetadata"}>'
import { SignallingClient } from "@metered-ca/realtime";
import WebSocket from "ws";

const [url, optionsJson] = process.argv.slice(2);
const options = JSON.parse(optionsJson);
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const credentials = options.token
  ? { tokenProvider: async () => options.token }
  : { apiKey: options.apiKey };
const client = new SignallingClient({
  url,
  ...credentials,
  webSocketFactory: (u) => new WebSocket(u),
});

client.on("connected", (e) => print({ event: "connected", peerId: e.peerId, iceServers: e.iceServers ?? null }));
client.on("message", (m) => print({ event: "message", ...m }));
client.on("disconnected", (e) => {
  print({ event: "disconnected", code: e.code, willReconnect: e.willReconnect });
  if (!e.willReconnect) process.exit(0);
});

process.stdin.on("end", () => {
  client.close();
  process.exit(0);
});
process.stdin.resume();

try {
  await client.connect();
  await client.subscribe(options.channel, { includeSenderMetadata: !!options.includeSenderMetadata });
  print({ event: "subscribed", channel: options.channel });
} catch (err) {
  print({ event: "failed", name: err?.name ?? null, code: err?.closeCode ?? null, message: String(err?.message ?? err) });
  process.exit(0);
}
