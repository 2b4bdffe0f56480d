// A publishable key connects: the welcome gives a fresh UUID peerId, no expiry and the size cap.
import assert from "node:assert/strict";
import { record, run, signallingClient, UUID, withKey } from "./lib.mjs";

run(async () => {
  const first = signallingClient(withKey());
  const firstConnected = record(first, "connected");
  await first.connect();
  const welcome = await firstConnected.next();
  assert.match(welcome.peerId, UUID);
  assert.equal(welcome.expiresAt, null);
  assert.equal(welcome.isReconnect, false);
  assert.equal(first.state, "connected");

  // A second connection with the same key is a different peer.
  const second = signallingClient(withKey());
  const secondConnected = record(second, "connected");
  await second.connect();
  const secondWelcome = await secondConnected.next();
  assert.match(secondWelcome.peerId, UUID);
  assert.notEqual(secondWelcome.peerId, welcome.peerId);

  await Promise.all([first.close(), second.close()]);
  return {
    peerIds: [welcome.peerId, secondWelcome.peerId],
    expiresAt: welcome.expiresAt,
    maxMessageSize: welcome.maxMessageSize,
    serverTime: welcome.serverTime,
  };
});
