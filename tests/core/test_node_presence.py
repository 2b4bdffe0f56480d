"""Presence ordering and semantics (spec section 5 and decisions 4, 5, 7, 15)."""

from __future__ import annotations

from typing import Any

from tests.core.fakes import ALL_ACTIONS, Hub

ALICE_META = b'{"name":"Alice"}'


def presence(channel: str, joined: list[Any] = (), left: list[Any] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {"type": "presence", "channel": channel, "joined": list(joined), "left": list(left)}


def peer(peer_id: str, **metadata: Any) -> dict[str, Any]:
    return {"peerId": peer_id, "metadata": metadata} if metadata else {"peerId": peer_id}


async def test_subscribe_gives_ack_then_snapshot_as_a_separate_write(hub: Hub) -> None:
    alice = await hub.connect("alice")
    await alice.subscribe("room", "r1")
    events = alice.new_events()
    assert [(e.kind, e.frame) for e in events] == [
        ("push", {"type": "ack", "requestId": "r1"}),
        ("pause", presence("room")),  # empty snapshot, always sent (decision 7)
    ]


async def test_subscribe_without_request_id_still_gets_a_snapshot(hub: Hub) -> None:
    alice = await hub.connect("alice")
    await alice.send({"type": "subscribe", "channel": "room"})
    assert [(e.kind, e.frame) for e in alice.new_events()] == [("pause", presence("room"))]


async def test_newcomer_joined_is_queued_to_members_before_its_snapshot(hub: Hub) -> None:
    alice = await hub.connect("alice", peer_metadata=ALICE_META)
    bob = await hub.connect("bob")
    await alice.subscribe("room", "a1")
    alice.new_events()
    hub.journal.clear()
    await bob.subscribe("room", "b1")
    assert [(label, e.kind, e.frame) for label, e in hub.journal] == [
        ("alice", "push", presence("room", joined=[peer("bob")])),
        ("bob", "push", {"type": "ack", "requestId": "b1"}),
        ("bob", "pause", presence("room", joined=[peer("alice", name="Alice")])),
    ]
    assert alice.new_frames() == [presence("room", joined=[peer("bob")])]
    assert [(e.kind, e.frame) for e in bob.new_events()] == [
        ("push", {"type": "ack", "requestId": "b1"}),
        ("pause", presence("room", joined=[peer("alice", name="Alice")])),
    ]


async def test_snapshot_lists_members_in_join_order_without_the_subscriber(hub: Hub) -> None:
    clients = [await hub.connect(f"p{i}") for i in range(4)]
    for client in clients:
        await client.subscribe("room")
    snapshot = clients[3].new_frames()[-1]
    assert snapshot == presence("room", joined=[peer("p0"), peer("p1"), peer("p2")])


async def test_left_on_unsubscribe_and_on_close_with_metadata(hub: Hub) -> None:
    alice = await hub.connect("alice", peer_metadata=ALICE_META)
    bob = await hub.connect("bob")
    carol = await hub.connect("carol")
    for c in (alice, bob, carol):
        await c.subscribe("room")
    bob.new_frames()
    await alice.unsubscribe("room", "u1")
    assert alice.new_frames()[-1] == {"type": "ack", "requestId": "u1"}
    assert bob.new_frames() == [presence("room", left=[peer("alice", name="Alice")])]
    await carol.close()
    assert bob.new_frames() == [presence("room", left=[peer("carol")])]
    assert alice.new_frames() == []  # no longer subscribed


async def test_unsubscribe_is_idempotent_and_silent_for_others(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    await bob.subscribe("room")
    bob.new_frames()
    await alice.unsubscribe("room", "u1")
    await alice.unsubscribe("room", "u2")
    assert alice.new_frames() == [
        {"type": "ack", "requestId": "u1"},
        {"type": "ack", "requestId": "u2"},
    ]
    assert bob.new_frames() == []


async def test_close_leaves_every_channel(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    for channel in ("a", "b", "c"):
        await bob.subscribe(channel)
        await alice.subscribe(channel)
    bob.new_frames()
    await alice.close()
    assert bob.new_frames() == [presence(ch, left=[peer("alice")]) for ch in ("a", "b", "c")]
    for channel in ("a", "b", "c"):
        assert [m.peer_id for m in await hub.node.channel_members("app", channel)] == ["bob"]


async def test_resubscribe_gives_a_fresh_snapshot_and_no_presence_to_others(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    await bob.subscribe("room")
    await alice.subscribe("room")
    bob.new_frames()
    alice.new_frames()
    await alice.subscribe("room", "again")
    assert [(e.kind, e.frame) for e in alice.new_events()] == [
        ("push", {"type": "ack", "requestId": "again"}),
        ("pause", presence("room", joined=[peer("bob")])),
    ]
    assert bob.new_frames() == []


async def test_resubscribe_updates_include_sender_metadata(hub: Hub) -> None:
    alice = await hub.connect("alice", peer_metadata=ALICE_META)
    bob = await hub.connect("bob")
    await bob.subscribe("room", include_sender_metadata=True)
    await alice.publish("room", 1)
    await bob.subscribe("room", include_sender_metadata=False)
    await alice.publish("room", 2)
    await bob.subscribe("room", include_sender_metadata=True)
    await alice.publish("room", 3)
    messages = [f for f in bob.new_frames() if f["type"] == "message"]
    assert [("fromMetadata" in m, m["data"]) for m in messages] == [
        (True, 1),
        (False, 2),
        (True, 3),
    ]


async def test_second_connection_of_a_present_peer_gives_left_then_joined(hub: Hub) -> None:
    alice1 = await hub.connect("alice", peer_metadata=ALICE_META)
    bob = await hub.connect("bob")
    await bob.subscribe("room")
    await alice1.subscribe("room")
    bob.new_frames()
    alice2 = await hub.connect("alice", peer_metadata=ALICE_META)
    await alice2.subscribe("room", "a2")
    entry = peer("alice", name="Alice")
    assert bob.new_frames() == [presence("room", joined=[entry], left=[entry])]
    # The new connection's snapshot lists the others, not itself.
    assert alice2.new_frames()[-1] == presence("room", joined=[peer("bob")])
    # Closing one of the two connections emits nothing; closing the last emits left.
    await alice1.close()
    assert bob.new_frames() == []
    assert [m.peer_id for m in await hub.node.channel_members("app", "room")] == ["bob", "alice"]
    await alice2.close()
    assert bob.new_frames() == [presence("room", left=[entry])]


async def test_peer_connections_do_not_see_each_others_presence(hub: Hub) -> None:
    alice1 = await hub.connect("alice")
    alice2 = await hub.connect("alice")
    await alice1.subscribe("room")
    alice1.new_frames()
    await alice2.subscribe("room")
    await alice2.unsubscribe("room")
    assert alice1.new_frames() == []
    assert alice2.new_frames()[1] == presence("room")


async def test_unsubscribing_one_of_two_connections_emits_nothing(hub: Hub) -> None:
    alice1 = await hub.connect("alice")
    alice2 = await hub.connect("alice")
    bob = await hub.connect("bob")
    await bob.subscribe("room")
    await alice1.subscribe("room")
    await alice2.subscribe("room")
    bob.new_frames()
    await alice1.unsubscribe("room")
    assert bob.new_frames() == []
    await alice2.unsubscribe("room")
    assert bob.new_frames() == [presence("room", left=[peer("alice")])]


async def test_without_presence_action_no_presence_frames_but_still_listed(hub: Hub) -> None:
    silent = await hub.connect("silent", actions=ALL_ACTIONS - {"presence"})
    bob = await hub.connect("bob")
    await bob.subscribe("room")
    await silent.subscribe("room", "s1")
    assert silent.new_frames() == [{"type": "ack", "requestId": "s1"}]  # no snapshot
    assert bob.new_frames()[-1] == presence("room", joined=[peer("silent")])
    carol = await hub.connect("carol")
    await carol.subscribe("room")
    await carol.close()
    await silent.subscribe("room", "s2")  # re-subscribe: still no snapshot
    assert silent.new_frames() == [{"type": "ack", "requestId": "s2"}]
    assert carol.new_frames()[-1] == presence("room", joined=[peer("bob"), peer("silent")])
    # Messages still flow to it.
    await bob.publish("room", "x")
    assert silent.new_frames() == [
        {"type": "message", "channel": "room", "from": "bob", "data": "x"}
    ]


async def test_pattern_subscription_gets_empty_snapshot_and_no_later_presence(hub: Hub) -> None:
    watcher = await hub.connect("watcher")
    await watcher.subscribe("room-*", "w1")
    assert [(e.kind, e.frame) for e in watcher.new_events()] == [
        ("push", {"type": "ack", "requestId": "w1"}),
        ("pause", presence("room-*")),
    ]
    bob = await hub.connect("bob")
    await bob.subscribe("room-1")
    await bob.close()
    assert watcher.new_frames() == []
    # A re-subscribe to the pattern gives another empty snapshot.
    await watcher.subscribe("room-*", "w2")
    assert [(e.kind, e.frame) for e in watcher.new_events()] == [
        ("push", {"type": "ack", "requestId": "w2"}),
        ("pause", presence("room-*")),
    ]
    # Pattern subscribers are not listed as channel members.
    assert await hub.node.channel_members("app", "room-*") == []


async def test_pattern_subscription_without_presence_action_has_no_snapshot(hub: Hub) -> None:
    watcher = await hub.connect("watcher", actions={"subscribe"})
    await watcher.subscribe("room-*", "w1")
    assert watcher.new_frames() == [{"type": "ack", "requestId": "w1"}]


async def test_presence_is_per_app(hub: Hub) -> None:
    alice = await hub.connect("alice", app_id="a")
    other_alice = await hub.connect("alice", app_id="b")
    bob_b = await hub.connect("bob", app_id="b")
    await bob_b.subscribe("room")
    await alice.subscribe("room")
    assert alice.new_frames()[-1] == presence("room")  # bob is in another app
    assert bob_b.new_frames()[-1] == presence("room")
    await other_alice.subscribe("room")
    # Alice of app b is a new peer in b, not a second connection of app a's alice.
    assert bob_b.new_frames() == [presence("room", joined=[peer("alice")])]
    await alice.close()
    assert bob_b.new_frames() == []


async def test_presence_entries_are_encoded_once_per_delta(hub: Hub) -> None:
    members = [await hub.connect(f"m{i}") for i in range(3)]
    for m in members:
        await m.subscribe("room")
    for m in members:
        m.new_events()
    newcomer = await hub.connect("new")
    await newcomer.subscribe("room")
    outs = [m.new_events()[0].out for m in members]
    assert outs[0] is outs[1] is outs[2]
