// Graceful shutdown as the SDK sees it: `going-away`, then a 1001 close that it would
// reconnect from. Prints a "ready" line once connected; the Python test then stops the server.
import assert from "node:assert/strict";
import { meteredPeer, params, record, run, signallingClient, withKey } from "./lib.mjs";

run(async () => {
  const client = signallingClient(withKey());
  const goingAway = record(client, "going-away");
  const disconnected = record(client, "disconnected");
  await client.connect();
  await client.subscribe(params.channel);

  const peer = meteredPeer(withKey());
  const peerStates = record(peer, "state-change");
  await peer.join(params.channel);

  console.log(JSON.stringify({ ready: true }));
  const notice = await goingAway.next(() => true, "going-away", params.waitMs);
  const closed = await disconnected.next(() => true, "disconnect", params.waitMs);
  const reconnecting = await peerStates.next((s) => s.to === "reconnecting", "peer reconnecting");
  // Nothing to come back to: stop both from retrying.
  await Promise.all([client.close(), peer.close()]);
  assert.ok(notice.retryAfterMs > 0);
  assert.equal(closed.code, 1001);
  assert.equal(closed.willReconnect, true);
  return {
    retryAfterMs: notice.retryAfterMs,
    code: closed.code,
    willReconnect: closed.willReconnect,
    peerState: reconnecting.to,
  };
});
