// A JWT whose channels claim is narrower than the subscribe: channel_not_authorized on the
// request's promise, the connection stays up, and in-scope channels keep working.
import assert from "node:assert/strict";
import { meteredPeer, params, record, rejectionOf, run, signallingClient, withToken } from "./lib.mjs";

run(async () => {
  const scoped = signallingClient(withToken(params.scopedToken));
  const disconnects = record(scoped, "disconnected");
  await scoped.connect();
  await scoped.subscribe(params.allowedChannel);
  const refused = await rejectionOf(scoped.subscribe(params.deniedChannel), "out-of-scope subscribe");
  assert.equal(refused.name, "channel_not_authorized");
  const refusedPublish = await rejectionOf(
    scoped.publish(params.deniedChannel, { x: 1 }),
    "out-of-scope publish",
  );
  assert.equal(refusedPublish.name, "channel_not_authorized");

  // Still connected: a publish in scope reaches another member.
  const other = signallingClient(withToken(params.otherToken));
  const otherInbox = record(other, "message");
  await other.connect();
  await other.subscribe(params.allowedChannel);
  await scoped.publish(params.allowedChannel, { ok: true });
  await otherInbox.next((m) => m.data.ok === true, "in-scope publish");
  assert.equal(scoped.state, "connected");
  assert.deepEqual(disconnects.seen, []);

  // MeteredPeer.join on an out-of-scope channel rejects the same way.
  const peer = meteredPeer(withToken(params.scopedPeerToken));
  const joinError = await rejectionOf(peer.join(params.deniedChannel), "out-of-scope join");
  assert.equal(joinError.name, "channel_not_authorized");

  await Promise.all([scoped.close(), other.close(), peer.close()]);
  return { subscribeError: refused.name, publishError: refusedPublish.name, joinError: joinError.name };
});
