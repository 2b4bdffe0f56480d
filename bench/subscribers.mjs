// Load generator for bench/cluster.py: many raw WebSocket subscribers in one Node process
// (the `ws` client costs a few µs per message, so the servers, not the clients, are measured).
// argv: <channel> <key> <url>... (one socket per url). stdin commands: report | count | stop.
// Latency = process.hrtime (CLOCK_MONOTONIC, the clock Python's time.monotonic_ns reads)
// minus the publisher's data.t, on every 10th socket.
import { createInterface } from "node:readline";
import WebSocket from "ws";

const [channel, key, ...urls] = process.argv.slice(2);
let received = 0;
let latencies = [];

function open(url, timed) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}/v1?key=${key}`, { perMessageDeflate: false });
    let subscribed = false;
    ws.on("error", reject);
    ws.on("message", (data) => {
      if (!subscribed) {
        const frame = JSON.parse(data);
        if (frame.type === "welcome") {
          ws.send(JSON.stringify({ type: "subscribe", channel, requestId: "s" }));
        } else if (frame.type === "ack") {
          subscribed = true;
          resolve(ws);
        }
        return;
      }
      received += 1;
      if (timed) {
        const sent = BigInt(JSON.parse(data).data.t);
        latencies.push(Number(process.hrtime.bigint() - sent));
      }
    });
  });
}

const sockets = [];
for (let i = 0; i < urls.length; i += 50) {
  const batch = urls.slice(i, i + 50).map((url, j) => open(url, (i + j) % 10 === 0));
  sockets.push(...(await Promise.all(batch)));
}
process.stdout.write("ready\n");
for await (const line of createInterface({ input: process.stdin })) {
  if (line === "report") {
    process.stdout.write(JSON.stringify({ received, latencies }) + "\n");
    received = 0;
    latencies = [];
  } else if (line === "count") {
    process.stdout.write(JSON.stringify({ received }) + "\n");
  } else {
    break;
  }
}
for (const ws of sockets) ws.terminate();
process.exit(0);
