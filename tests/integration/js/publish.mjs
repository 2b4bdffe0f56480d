// publish with and without includeSenderMetadata: fromMetadata reaches only the subscribers
// that opted in, and only when the sender has peerMetadata. The sender gets no echo.
import assert from "node:assert/strict";
import { params, record, run, signallingClient, withKey, withToken } from "./lib.mjs";

const room = params.channel;

run(async () => {
  const sender = signallingClient(withToken(params.senderToken));
  const plainSender = signallingClient(withKey());
  const optedIn = signallingClient(withKey());
  const notOptedIn = signallingClient(withKey());
  const clients = [sender, plainSender, optedIn, notOptedIn];
  const inbox = new Map(clients.map((c) => [c, record(c, "message")]));
  await Promise.all(clients.map((c) => c.connect()));
  await sender.subscribe(room);
  await optedIn.subscribe(room, { includeSenderMetadata: true });
  await notOptedIn.subscribe(room);

  await sender.publish(room, { text: "from the token peer", n: 1 });
  await plainSender.publish(room, { text: "from the key peer", n: 2 });
  const byN = (n) => (m) => m.data?.n === n;
  const withMetadata = await inbox.get(optedIn).next(byN(1), "opted-in message 1");
  const noMetadataSender = await inbox.get(optedIn).next(byN(2), "opted-in message 2");
  const withoutOptIn = await inbox.get(notOptedIn).next(byN(1), "plain message 1");
  await inbox.get(notOptedIn).next(byN(2), "plain message 2");

  assert.deepEqual(withMetadata, {
    channel: room,
    from: params.senderSub,
    fromMetadata: params.senderMetadata,
    data: { text: "from the token peer", n: 1 },
  });
  assert.equal("fromMetadata" in noMetadataSender, false);
  assert.equal("fromMetadata" in withoutOptIn, false);
  assert.equal(withoutOptIn.from, params.senderSub);

  // The token peer gets the others' messages but no echo of its own; the key peer, not
  // subscribed, gets nothing. A marker published last bounds the wait for stragglers.
  await optedIn.publish(room, { n: 3 });
  await inbox.get(sender).next(byN(3), "marker");
  const senderGot = inbox.get(sender).seen.map((m) => m.data.n);
  assert.deepEqual(senderGot, [2, 3]);
  assert.deepEqual(inbox.get(plainSender).seen, []);

  await Promise.all(clients.map((c) => c.close()));
  return {
    withMetadata,
    noMetadataSender,
    withoutOptIn,
    senderGot,
    optedInGot: inbox.get(optedIn).seen.map((m) => m.data.n),
  };
});
