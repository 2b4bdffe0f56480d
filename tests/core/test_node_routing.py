"""Publish, direct and wildcard routing: who gets what, with which bytes."""

from __future__ import annotations

from hubbub.core.broker import Publication
from tests.core.fakes import Hub

META = b'{"name":"Alice"}'


async def test_publish_reaches_other_subscribers_not_the_publisher(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    carol = await hub.connect("carol")
    for c in (alice, bob, carol):
        await c.subscribe("room")
    for c in (alice, bob, carol):
        c.new_frames()
    await alice.publish("room", {"x": [1, None]}, "p1")
    assert alice.new_frames() == [{"type": "ack", "requestId": "p1"}]
    expected = {"type": "message", "channel": "room", "from": "alice", "data": {"x": [1, None]}}
    assert bob.new_frames() == [expected]
    assert carol.new_frames() == [expected]


async def test_fan_out_shares_one_frame_object_and_keeps_data_bytes(hub: Hub) -> None:
    subs = [await hub.connect(f"s{i}") for i in range(3)]
    for s in subs:
        await s.subscribe("room")
    for s in subs:
        s.new_events()
    alice = await hub.connect("alice")
    await alice.send(
        '{"type":"publish","channel":"room","data": {"b":1,  "a":2.50},"requestId":"p"}'
    )
    outs = [s.new_events()[0].out for s in subs]
    assert outs[0] is outs[1] is outs[2]
    assert outs[0] is not None
    assert outs[0].payload == (
        b'{"type":"message","channel":"room","from":"alice","data":{"b":1,  "a":2.50}}'
    )


async def test_publisher_need_not_be_subscribed_and_null_data_is_delivered(hub: Hub) -> None:
    bob = await hub.connect("bob")
    await bob.subscribe("tasks/bob")
    bob.new_frames()
    boss = await hub.connect("boss")
    await boss.publish("tasks/bob", None, "p")
    assert boss.new_frames() == [{"type": "ack", "requestId": "p"}]
    assert bob.new_frames() == [
        {"type": "message", "channel": "tasks/bob", "from": "boss", "data": None}
    ]


async def test_publish_without_request_id_gets_no_ack(hub: Hub) -> None:
    alice = await hub.connect("alice")
    await alice.send({"type": "publish", "channel": "c", "data": 1})
    assert alice.new_frames() == []


async def test_other_connection_of_the_publisher_receives_the_message(hub: Hub) -> None:
    tab1 = await hub.connect("alice")
    tab2 = await hub.connect("alice")
    for tab in (tab1, tab2):
        await tab.subscribe("room")
        tab.new_frames()
    await tab1.publish("room", 1)
    assert tab2.new_frames() == [{"type": "message", "channel": "room", "from": "alice", "data": 1}]
    assert tab1.new_frames() == [{"type": "ack", "requestId": "p"}]


async def test_include_sender_metadata_only_for_opted_in_recipients(hub: Hub) -> None:
    alice = await hub.connect("alice", peer_metadata=META)
    plain_sender = await hub.connect("plain")
    opted = await hub.connect("opted")
    default = await hub.connect("default")
    explicit_off = await hub.connect("off")
    await opted.subscribe("room", include_sender_metadata=True)
    await default.subscribe("room")
    await explicit_off.subscribe("room", include_sender_metadata=False)
    for c in (opted, default, explicit_off):
        c.new_frames()
    await alice.publish("room", 1)
    await plain_sender.publish("room", 2)
    assert opted.new_frames() == [
        {
            "type": "message",
            "channel": "room",
            "from": "alice",
            "data": 1,
            "fromMetadata": {"name": "Alice"},
        },
        {"type": "message", "channel": "room", "from": "plain", "data": 2},
    ]
    for c in (default, explicit_off):
        assert c.new_frames() == [
            {"type": "message", "channel": "room", "from": "alice", "data": 1},
            {"type": "message", "channel": "room", "from": "plain", "data": 2},
        ]


async def test_include_sender_metadata_null_means_false(hub: Hub) -> None:
    alice = await hub.connect("alice", peer_metadata=META)
    bob = await hub.connect("bob")
    await bob.send({"type": "subscribe", "channel": "room", "includeSenderMetadata": None})
    await alice.publish("room", 1)
    assert "fromMetadata" not in bob.new_frames()[-1]


async def test_direct_always_carries_sender_metadata(hub: Hub) -> None:
    alice = await hub.connect("alice", peer_metadata=META)
    plain = await hub.connect("plain")
    bob = await hub.connect("bob")
    await alice.direct("bob", {"sdp": "v=0"}, "d1")
    await plain.direct("bob", 2, "d2")
    assert alice.new_frames() == [{"type": "ack", "requestId": "d1"}]
    assert bob.new_frames() == [
        {
            "type": "direct",
            "from": "alice",
            "data": {"sdp": "v=0"},
            "fromMetadata": {"name": "Alice"},
        },
        {"type": "direct", "from": "plain", "data": 2},
    ]


async def test_direct_goes_to_every_connection_of_the_target(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob1 = await hub.connect("bob")
    bob2 = await hub.connect("bob")
    await alice.direct("bob", "hi", "d")
    assert alice.new_frames() == [{"type": "ack", "requestId": "d"}]
    for bob in (bob1, bob2):
        assert bob.new_frames() == [{"type": "direct", "from": "alice", "data": "hi"}]
    await bob1.close()
    await alice.direct("bob", "again", "d2")
    assert bob2.new_frames() == [{"type": "direct", "from": "alice", "data": "again"}]
    await bob2.close()
    await alice.direct("bob", "gone", "d3")
    assert alice.new_frames()[-1]["code"] == "peer_not_found"


async def test_send_to_own_peer_id_reaches_only_the_other_connections(hub: Hub) -> None:
    tab1 = await hub.connect("alice")
    tab2 = await hub.connect("alice")
    await tab1.direct("alice", "note", "d")
    assert tab1.new_frames() == [{"type": "ack", "requestId": "d"}]
    assert tab2.new_frames() == [{"type": "direct", "from": "alice", "data": "note"}]


async def test_send_is_not_limited_by_channel_scope(hub: Hub) -> None:
    alice = await hub.connect("alice", patterns=["nothing"])
    bob = await hub.connect("bob")
    await alice.direct("bob", 1, "d")
    assert alice.new_frames() == [{"type": "ack", "requestId": "d"}]
    assert bob.new_frames() == [{"type": "direct", "from": "alice", "data": 1}]


async def test_per_sender_order_is_kept(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    await bob.subscribe("room")
    bob.new_frames()
    for i in range(20):
        if i % 2:
            await alice.direct("bob", i)
        else:
            await alice.publish("room", i)
    assert [f["data"] for f in bob.new_frames()] == list(range(20))


async def test_tenancy_nothing_crosses_apps(hub: Hub) -> None:
    alice_a = await hub.connect("alice", app_id="a")
    bob_a = await hub.connect("bob", app_id="a")
    bob_b = await hub.connect("bob", app_id="b")
    watcher_b = await hub.connect("watcher", app_id="b")
    await bob_a.subscribe("room")
    await bob_b.subscribe("room")
    await watcher_b.subscribe("**")
    for c in (bob_a, bob_b, watcher_b):
        c.new_frames()
    await alice_a.publish("room", 1)
    await alice_a.direct("bob", 2)
    await alice_a.direct("watcher", 3, "d")
    assert [f["data"] for f in bob_a.new_frames()] == [1, 2]
    assert bob_b.new_frames() == []
    assert watcher_b.new_frames() == []
    assert alice_a.new_frames()[-1]["code"] == "peer_not_found"
    assert await hub.node.kick_peer("b", "alice") == 0
    assert not alice_a.sink.closed


async def test_wildcard_subscription_gets_concrete_channel_names(hub: Hub) -> None:
    fleet = await hub.connect("fleet")
    await fleet.subscribe("devices/*/events")
    await fleet.subscribe("logs/**")
    fleet.new_frames()
    device = await hub.connect("device")
    await device.publish("devices/d1/events", 1)
    await device.publish("devices/d1/x/events", 2)  # * stops at "/"
    await device.publish("logs/a/b/c", 3)
    await device.publish("devices/d2/events", 4)
    assert [(f["channel"], f["data"]) for f in fleet.new_frames()] == [
        ("devices/d1/events", 1),
        ("logs/a/b/c", 3),
        ("devices/d2/events", 4),
    ]


async def test_exact_and_pattern_subscriptions_deliver_once(hub: Hub) -> None:
    bob = await hub.connect("bob")
    await bob.subscribe("room-1")
    await bob.subscribe("room-*")
    await bob.subscribe("**")
    bob.new_frames()
    alice = await hub.connect("alice")
    await alice.publish("room-1", 1)
    await alice.publish("room-2", 2)
    await alice.publish("other", 3)
    assert [(f["channel"], f["data"]) for f in bob.new_frames()] == [
        ("room-1", 1),
        ("room-2", 2),
        ("other", 3),
    ]


async def test_dedupe_uses_the_first_matching_subscription_for_metadata(hub: Hub) -> None:
    bob = await hub.connect("bob")
    await bob.subscribe("room-1", include_sender_metadata=True)
    await bob.subscribe("room-*")
    bob.new_frames()
    alice = await hub.connect("alice", peer_metadata=META)
    await alice.publish("room-1", 1)
    assert bob.new_frames() == [
        {
            "type": "message",
            "channel": "room-1",
            "from": "alice",
            "data": 1,
            "fromMetadata": {"name": "Alice"},
        }
    ]


async def test_pattern_subscribers_with_and_without_metadata(hub: Hub) -> None:
    a = await hub.connect("a")
    b = await hub.connect("b")
    await a.subscribe("room-*", include_sender_metadata=True)
    await b.subscribe("room-*")
    a.new_frames()
    b.new_frames()
    alice = await hub.connect("alice", peer_metadata=META)
    await alice.publish("room-9", 1)
    assert a.new_frames()[0]["fromMetadata"] == {"name": "Alice"}
    assert "fromMetadata" not in b.new_frames()[0]


async def test_pattern_unsubscribe_stops_delivery(hub: Hub) -> None:
    bob = await hub.connect("bob")
    carol = await hub.connect("carol")
    await bob.subscribe("room-*")
    await carol.subscribe("room-*")
    await bob.unsubscribe("room-*", "u")
    assert bob.new_frames()[-1] == {"type": "ack", "requestId": "u"}
    carol.new_frames()
    alice = await hub.connect("alice")
    await alice.publish("room-1", 1)
    assert bob.new_frames() == []
    assert carol.new_frames() == [
        {"type": "message", "channel": "room-1", "from": "alice", "data": 1}
    ]
    await carol.close()
    assert await hub.node.publish_from_server("app", "room-1", b"2") == 0


async def test_escaped_star_is_a_concrete_channel(hub: Hub) -> None:
    bob = await hub.connect("bob")
    await bob.subscribe("a\\*b", "s")
    assert bob.new_frames()[0] == {"type": "ack", "requestId": "s"}
    alice = await hub.connect("alice")
    await alice.publish("axb", 1)
    await alice.publish("a\\*b", 2)
    assert [f["data"] for f in bob.new_frames()] == [2]


async def test_dangling_escape_in_a_pattern_subscribe_is_invalid_channel(hub: Hub) -> None:
    bob = await hub.connect("bob")
    await bob.subscribe("room-*\\", "s")
    assert bob.new_frames() == [
        {
            "type": "error",
            "code": "invalid_channel",
            "message": "invalid channel name",
            "requestId": "s",
        }
    ]


async def test_server_publish_reaches_everyone_with_from_and_metadata(hub: Hub) -> None:
    bob = await hub.connect("bob")
    await bob.subscribe("room", include_sender_metadata=True)
    bob.new_frames()
    assert await hub.node.publish_from_server("app", "room", b"1") == 1
    assert (
        await hub.node.publish_from_server(
            "app", "room", b"2", sender="system", sender_metadata=META
        )
        == 1
    )
    assert bob.new_frames() == [
        {"type": "message", "channel": "room", "from": "server", "data": 1},
        {
            "type": "message",
            "channel": "room",
            "from": "system",
            "data": 2,
            "fromMetadata": {"name": "Alice"},
        },
    ]
    assert await hub.node.publish_from_server("app", "empty", b"3") == 0


async def test_usage_counts_connections_and_messages(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    await alice.publish("c", 1)
    await alice.direct("bob", 1)
    await bob.close()
    usage = await hub.node.usage("app")
    assert (usage.concurrent_now, usage.peak_concurrent, usage.messages_used) == (1, 2, 2)
    assert usage.period_start <= hub.clock.now < usage.period_end


async def test_pattern_cache_is_bounded(hub: Hub) -> None:
    bob = await hub.connect("bob")
    await bob.subscribe("c/*")
    bob.new_frames()
    # Straight to the broker callback: more distinct channels than the cache keeps.
    for i in range(10_050):
        publication = Publication("app", f"c/{i}", "server", b"1", None, None)
        assert hub.node.deliver_publication(publication) == 1
    frames = bob.new_frames()
    assert len(frames) == 10_050
    assert frames[-1]["channel"] == "c/10049"
