// The SDK's application-level keepalive: with a short inactivity window it pings every third
// of it, and the server's pongs keep an otherwise idle connection up (no 4000 reconnects).
import assert from "node:assert/strict";
import { params, record, run, signallingClient, withKey } from "./lib.mjs";

run(async () => {
  const client = signallingClient({ ...withKey(), inactivityTimeoutMs: params.inactivityMs });
  const disconnected = record(client, "disconnected");
  const connected = record(client, "connected");
  await client.connect();
  // Idle for several inactivity windows: this wait is the thing under test, not a race.
  await new Promise((resolve) => setTimeout(resolve, params.idleMs));
  const summary = { disconnects: disconnected.seen.length, connects: connected.seen.length };
  assert.deepEqual(disconnected.seen, []);
  assert.equal(connected.seen.length, 1);
  assert.equal(client.state, "connected");
  await client.close();
  return summary;
});
