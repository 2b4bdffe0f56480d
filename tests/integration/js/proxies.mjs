// Backend proxies through the official JS SDK: the connect proxy identifies a browser by its
// cookie (no JWT), the subscribe proxy refuses with its own code, the publish proxy allows,
// replaces, refuses, times out, answers nonsense — and keeps each connection's publishes in
// order while other connections go on.
import assert from "node:assert/strict";
import WebSocket from "ws";
import { SignallingClient } from "@metered-ca/realtime";
import { params, record, rejectionOf, run } from "./lib.mjs";

// Node's `ws` sends no cookies by itself; a browser would send the site's session cookie.
function clientWithCookie(cookie, apiKey = "pk_site") {
  return new SignallingClient({
    url: params.url,
    apiKey,
    reconnect: false,
    webSocketFactory: (target) =>
      new WebSocket(target, {
        headers: { cookie, "x-not-forwarded": "secret" },
        allowSynchronousEvents: false,
      }),
  });
}

run(async () => {
  const channel = params.channel;
  const alice = clientWithCookie("session=alice-session");
  const bob = clientWithCookie("session=bob-session");
  const carol = clientWithCookie("session=carol-session");
  const aliceWelcome = record(alice, "connected");
  await Promise.all([alice.connect(), bob.connect(), carol.connect()]);
  const { peerId } = await aliceWelcome.next();
  assert.equal(peerId, "alice"); // the backend named it

  // connect refused (403) / backend fault (malformed answer): the upgrade fails (1006).
  const banned = await rejectionOf(clientWithCookie("session=banned").connect(), "banned connect");
  assert.equal(banned.closeCode, 1006);
  const garbled = await rejectionOf(clientWithCookie("session=garbage").connect(), "garbled");
  assert.equal(garbled.closeCode, 1006);
  // connect proxy timeout / backend down: refused too (HTTP 503; the test checks the status).
  const hung = await rejectionOf(clientWithCookie("session=hang").connect(), "hung connect");
  assert.equal(hung.closeCode, 1006);
  const down = await rejectionOf(
    clientWithCookie("session=alice-session", "pk_down").connect(),
    "connect proxy down",
  );
  assert.equal(down.closeCode, 1006);

  // publish proxy down: the publish fails with backend_error, the connection stays.
  const orphan = clientWithCookie("session=olga-session", "pk_publish_down");
  await orphan.connect();
  const unheard = await rejectionOf(orphan.publish(params.channel, "hello?"), "proxy down");
  assert.equal(unheard.name, "backend_error");
  assert.equal(orphan.state, "connected");
  await orphan.close();

  // subscribe proxy: allowed, and refused with the backend's own code.
  const bobInbox = record(bob, "message");
  const carolInbox = record(carol, "message");
  await bob.subscribe(channel);
  await carol.subscribe(channel);
  const refused = await rejectionOf(alice.subscribe("private/x"), "private subscribe");
  assert.equal(refused.name, "members_only");

  // publish proxy: as sent, replaced, refused with a code, timeout, malformed answer.
  await alice.publish(channel, "plain");
  await bobInbox.next((m) => m.data === "plain", "plain message");
  await alice.publish(channel, "shout");
  const replaced = await bobInbox.next((m) => typeof m.data === "object", "replaced message");
  assert.deepEqual(replaced.data, { text: "SHOUT" });
  const forbidden = await rejectionOf(alice.publish(channel, "forbidden"), "forbidden publish");
  assert.equal(forbidden.name, "no_swearing");
  const broken = await rejectionOf(alice.publish(channel, "broken"), "malformed answer");
  assert.equal(broken.name, "backend_error");

  // A publish the backend never answers holds up alice's later publishes only: carol's goes
  // through meanwhile.
  let slowSettled = false;
  const slow = rejectionOf(alice.publish(channel, "slow"), "slow publish").finally(() => {
    slowSettled = true;
  });
  const afterSlow = alice.publish(channel, "after slow");
  await carol.publish(channel, "carol meanwhile");
  await bobInbox.next((m) => m.data === "carol meanwhile", "carol's message");
  assert.equal(slowSettled, false);
  assert.equal((await slow).name, "backend_error");
  await afterSlow;
  await bobInbox.next((m) => m.data === "after slow", "the publish queued behind the slow one");

  // Each connection's publishes arrive in order although the backend answers them after
  // random delays; two connections publish at once.
  const count = params.count;
  const sends = [];
  for (let n = 0; n < count; n++) {
    sends.push(alice.publish(channel, { from: "alice", n }));
    sends.push(carol.publish(channel, { from: "carol", n }));
  }
  await Promise.all(sends);
  const seenBy = (inbox, from) =>
    inbox.seen.filter((m) => m.data && m.data.from === from).map((m) => m.data.n);
  await bobInbox.next((m) => m.data && m.data.from === "carol" && m.data.n === count - 1);
  await bobInbox.next((m) => m.data && m.data.from === "alice" && m.data.n === count - 1);
  const expected = [...Array(count).keys()];
  assert.deepEqual(seenBy(bobInbox, "alice"), expected);
  assert.deepEqual(seenBy(bobInbox, "carol"), expected);
  assert.deepEqual(seenBy(carolInbox, "alice"), expected);

  await Promise.all([alice.close(), bob.close(), carol.close()]);
  return {
    peerId,
    bobSaw: bobInbox.seen.filter((m) => typeof m.data === "string").map((m) => m.data),
  };
});
