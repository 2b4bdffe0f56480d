// A token that expires a few seconds ahead: the server closes 4002 about 250 ms before exp.
// The SDK treats 4002 as "reconnect with a fresh token"; the scenario closes it once observed.
import assert from "node:assert/strict";
import { params, record, run, signallingClient, withToken } from "./lib.mjs";

run(async () => {
  const client = signallingClient(withToken(params.token));
  const connected = record(client, "connected");
  const disconnected = record(client, "disconnected");
  await client.connect();
  const welcome = await connected.next();
  assert.equal(welcome.expiresAt, params.exp);
  await client.subscribe(params.channel);

  const closed = await disconnected.next(() => true, "expiry close", params.waitMs);
  const observedAtMs = Date.now();
  await client.close();
  assert.equal(closed.code, 4002);
  assert.equal(closed.willReconnect, true);
  return { code: closed.code, willReconnect: closed.willReconnect, observedAtMs, exp: params.exp };
});
