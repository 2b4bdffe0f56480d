// Presence between several SDK clients: MeteredPeers see peer-joined (from a snapshot or a
// delta) and peer-left; a SignallingClient observer sees the raw snapshot and deltas in order.
import assert from "node:assert/strict";
import { meteredPeer, params, record, run, signallingClient, withKey, withToken } from "./lib.mjs";

const room = params.channel;
const ids = (peers) => peers.map((p) => p.peerId);

run(async () => {
  const observer = signallingClient(withKey());
  const observed = record(observer, "presence");
  const observerConnected = record(observer, "connected");
  await observer.connect();
  // The observer is a member of the room too, so every MeteredPeer sees it as a remote peer.
  const observerId = (await observerConnected.next()).peerId;
  await observer.subscribe(room);
  const emptySnapshot = await observed.next((p) => p.channel === room, "empty snapshot");
  assert.deepEqual(emptySnapshot, { channel: room, joined: [], left: [] });

  const alice = meteredPeer(withKey());
  const aliceJoinedPeers = record(alice, "peer-joined");
  const aliceLeftPeers = record(alice, "peer-left");
  const aliceJoined = record(alice, "joined");
  await alice.join(room);
  const aliceId = (await aliceJoined.next()).peerId;
  assert.equal(alice.state, "joined");
  await observed.next((p) => ids(p.joined).includes(aliceId), "alice joined");

  const bob = meteredPeer(withKey());
  const bobJoinedPeers = record(bob, "peer-joined");
  await bob.join(room);
  const bobId = bob.peerId;
  // alice hears of bob through a delta, bob of alice through his snapshot.
  await aliceJoinedPeers.next((e) => e.peer.id === bobId, "alice sees bob");
  await bobJoinedPeers.next((e) => e.peer.id === aliceId, "bob sees alice");
  await bobJoinedPeers.next((e) => e.peer.id === observerId, "bob sees the observer");
  await observed.next((p) => ids(p.joined).includes(bobId), "observer sees bob");

  const carol = meteredPeer(withToken(params.carolToken));
  const carolJoinedPeers = record(carol, "peer-joined");
  const carolLeftPeers = record(carol, "peer-left");
  await carol.join(room);
  assert.equal(carol.peerId, params.carolSub);
  const carolAtAlice = await aliceJoinedPeers.next((e) => e.peer.id === params.carolSub, "carol");
  const carolAtBob = await bobJoinedPeers.next((e) => e.peer.id === params.carolSub, "carol");
  assert.deepEqual(carolAtAlice.peer.metadata, params.carolMetadata);
  assert.deepEqual(carolAtBob.peer.metadata, params.carolMetadata);
  await carolJoinedPeers.next((e) => e.peer.id === aliceId, "carol sees alice");
  await carolJoinedPeers.next((e) => e.peer.id === bobId, "carol sees bob");

  // bob leaves: everyone else is told, and their peer maps shrink.
  await bob.close();
  await aliceLeftPeers.next((e) => e.peer.id === bobId, "alice sees bob leave");
  await carolLeftPeers.next((e) => e.peer.id === bobId, "carol sees bob leave");
  await observed.next((p) => ids(p.left).includes(bobId), "observer sees bob leave");
  const remoteIds = (peer) => peer.remotePeers.map((p) => p.id).sort();
  assert.deepEqual(remoteIds(alice), [observerId, params.carolSub].sort());
  assert.deepEqual(remoteIds(carol), [observerId, aliceId].sort());

  await Promise.all([alice.close(), carol.close()]);
  await observed.next((p) => ids(p.left).includes(params.carolSub), "carol leaves");
  await observed.next((p) => ids(p.left).includes(aliceId), "alice leaves");
  await observer.close();
  return {
    observerId,
    aliceId,
    bobId,
    observed: observed.seen,
    aliceSaw: aliceJoinedPeers.seen.map((e) => e.peer.id),
    bobSaw: bobJoinedPeers.seen.map((e) => e.peer.id),
  };
});
