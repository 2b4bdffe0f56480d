// A JWT from tokenProvider: sub becomes the peerId, exp the expiresAt, and the token's
// peerMetadata is what other members see in presence.
import assert from "node:assert/strict";
import { params, record, run, signallingClient, withKey, withToken } from "./lib.mjs";

run(async () => {
  let providerCalls = 0;
  const alice = signallingClient({
    tokenProvider: async () => {
      providerCalls += 1;
      return params.token;
    },
  });
  const aliceConnected = record(alice, "connected");
  await alice.connect();
  const welcome = await aliceConnected.next();
  assert.equal(welcome.peerId, params.sub);
  assert.equal(welcome.expiresAt, params.exp);
  await alice.subscribe(params.channel);

  // An observer on a publishable key sees alice, with her metadata, in its snapshot.
  const observer = signallingClient(withKey());
  const presence = record(observer, "presence");
  await observer.connect();
  await observer.subscribe(params.channel);
  const snapshot = await presence.next((p) => p.channel === params.channel, "snapshot");
  assert.deepEqual(snapshot.left, []);
  assert.deepEqual(snapshot.joined, [{ peerId: params.sub, metadata: params.peerMetadata }]);

  // And alice leaving (socket close) reaches the observer as `left`, metadata included.
  await alice.close();
  const left = await presence.next((p) => p.left.length > 0, "left");
  assert.deepEqual(left.left.map((p) => p.peerId), [params.sub]);

  // A second client on the same token path uses the provider too.
  const bob = signallingClient(withToken(params.otherToken));
  const bobConnected = record(bob, "connected");
  await bob.connect();
  const bobWelcome = await bobConnected.next();
  await Promise.all([observer.close(), bob.close()]);
  return {
    peerId: welcome.peerId,
    expiresAt: welcome.expiresAt,
    providerCalls,
    snapshot,
    left,
    otherPeerId: bobWelcome.peerId,
  };
});
