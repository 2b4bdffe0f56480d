// A MeteredPeer whose token expires: close 4002, the SDK asks tokenProvider for a fresh token,
// reconnects, re-subscribes and reconciles from the new snapshot. The other member sees the
// peer leave and come back (left then joined), so WebRTC peers would rebuild.
import assert from "node:assert/strict";
import { meteredPeer, params, record, run, withKey } from "./lib.mjs";

run(async () => {
  const tokens = [params.shortToken, params.longToken];
  let providerCalls = 0;
  const alice = meteredPeer({
    tokenProvider: async () => tokens[Math.min(providerCalls++, tokens.length - 1)],
    reconnect: { initialDelayMs: 100, maxAttempts: 5 },
  });
  const aliceStates = record(alice, "state-change");
  const aliceClientConnected = record(alice.client, "connected");
  const aliceClientDisconnected = record(alice.client, "disconnected");
  const bob = meteredPeer(withKey());
  const bobJoined = record(bob, "peer-joined");
  const bobLeft = record(bob, "peer-left");
  const bobSaw = [];
  bob.on("peer-joined", (e) => bobSaw.push(`joined ${e.peer.id}`));
  bob.on("peer-left", (e) => bobSaw.push(`left ${e.peer.id}`));

  await alice.join(params.channel);
  await bob.join(params.channel);
  await bobJoined.next((e) => e.peer.id === params.sub, "bob sees alice");

  const expired = await aliceClientDisconnected.next(() => true, "expiry", params.waitMs);
  assert.equal(expired.code, 4002);
  const back = await aliceClientConnected.next((c) => c.isReconnect, "reconnect", params.waitMs);
  assert.equal(back.peerId, params.sub);
  assert.equal(back.expiresAt, params.longExp);
  await aliceStates.next((s) => s.from === "reconnecting" && s.to === "joined", "rejoined");
  await bobLeft.next((e) => e.peer.id === params.sub, "bob sees alice leave");
  const firstJoin = bobJoined.seen[0];
  await bobJoined.next((e) => e !== firstJoin && e.peer.id === params.sub, "alice returns");
  assert.deepEqual(bobSaw, [`joined ${params.sub}`, `left ${params.sub}`, `joined ${params.sub}`]);
  assert.deepEqual(alice.remotePeers.map((p) => p.id), [bob.peerId]);
  assert.deepEqual(bob.remotePeers.map((p) => p.id), [params.sub]);

  await Promise.all([alice.close(), bob.close()]);
  return { providerCalls, expiredCode: expired.code, reconnectExpiresAt: back.expiresAt };
});
