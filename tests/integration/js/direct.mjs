// send → direct to the target peer (with its sender's identity, in order); a send to a peer
// that is not connected rejects with peer_not_found, and the connection carries on.
import assert from "node:assert/strict";
import { meteredPeer, params, record, rejectionOf, run, signallingClient, withKey, withToken } from "./lib.mjs";

run(async () => {
  const alice = signallingClient(withToken(params.aliceToken));
  const bob = signallingClient(withToken(params.bobToken));
  const bobInbox = record(bob, "direct");
  await Promise.all([alice.connect(), bob.connect()]);

  for (let n = 1; n <= 20; n += 1) await alice.send(params.bobSub, { n });
  await bobInbox.next((d) => d.data.n === 20, "twentieth direct");
  assert.deepEqual(bobInbox.seen.map((d) => d.data.n), Array.from({ length: 20 }, (_, i) => i + 1));
  assert.equal(bobInbox.seen[0].from, params.aliceSub);

  const missing = await rejectionOf(alice.send("nobody-home", { hi: 1 }), "send to nobody");
  assert.equal(missing.name, "peer_not_found");

  // The connection is still fine after the error.
  await alice.send(params.bobSub, { n: 21 });
  await bobInbox.next((d) => d.data.n === 21, "direct after the error");

  // The same through MeteredPeer.sendTo (which surfaces the server's error as-is).
  const room = params.channel;
  const carol = meteredPeer(withKey());
  await carol.join(room);
  const viaPeer = await rejectionOf(carol.sendTo("nobody-home", { hi: 2 }), "sendTo nobody");
  assert.equal(viaPeer.name, "peer_not_found");

  await Promise.all([alice.close(), bob.close(), carol.close()]);
  return { received: bobInbox.seen.length, errorName: missing.name, peerErrorName: viaPeer.name };
});
