"""The node's listings (GET /v1/connections, /v1/channels, /v1/nodes) on one node: filters,
order, limits, the frame counters and the channel rates."""

from __future__ import annotations

import pytest

from hubbub.core.activity import WINDOW_S
from tests.core.fakes import Hub
from tests.support.clock import START_TIME


async def test_connections_list_subscriptions_address_age_and_frame_counts(hub: Hub) -> None:
    alice = await hub.connect("alice", remote_addr="10.0.0.7")
    hub.clock.now += 5
    bob = await hub.connect("bob")
    await alice.subscribe("room", "s1")
    await alice.subscribe("devices/*/events", "s2")
    await bob.subscribe("room", "s3")
    await bob.publish("room", {"n": 1}, "p1")
    await alice.send({"type": "ping"})

    listed = await hub.node.list_connections("app")
    assert [c.peer_id for c in listed] == ["alice", "bob"]
    first, second = listed
    assert first.channels == ("room", "devices/*/events")
    assert first.remote_addr == "10.0.0.7"
    assert first.connected_at == START_TIME
    assert first.node == "n1"
    # Frames in: 2 subscribes + 1 ping. Out: what its sink got (welcome included).
    assert first.frames_in == 3
    assert first.frames_out == len(alice.sink.events)
    assert second.remote_addr is None
    assert second.connected_at == START_TIME + 5
    assert second.frames_in == 2
    assert second.frames_out == len(bob.sink.events)


async def test_connections_filter_by_channel_pattern_name_and_peer(hub: Hub) -> None:
    alice = await hub.connect("alice")
    hub.clock.now += 1
    await hub.connect("alice")  # a second tab, newer
    bob = await hub.connect("bob")
    await alice.subscribe("room")
    await bob.subscribe("devices/*/events")
    await hub.connect("carol", app_id="other")

    assert [c.peer_id for c in await hub.node.list_connections("app", channel="room")] == ["alice"]
    by_pattern = await hub.node.list_connections("app", channel="devices/*/events")
    assert [c.peer_id for c in by_pattern] == ["bob"]
    tabs = await hub.node.list_connections("app", peer_id="alice")
    assert [(c.peer_id, c.channels) for c in tabs] == [("alice", ("room",)), ("alice", ())]
    assert await hub.node.list_connections("app", channel="nowhere") == []
    # Tenancy: another app's connections never show.
    assert [c.peer_id for c in await hub.node.list_connections("other")] == ["carol"]


async def test_connections_limit_keeps_the_first_in_order_and_skips_closed(hub: Hub) -> None:
    clients = [await hub.connect(f"p{i:02d}") for i in range(12)]
    await clients[0].close()
    listed = await hub.node.list_connections("app", limit=5)
    assert [c.peer_id for c in listed] == ["p01", "p02", "p03", "p04", "p05"]
    await hub.node.kick_peer("app", "p01")  # closing: no longer listed
    listed = await hub.node.list_connections("app", limit=2)
    assert [c.peer_id for c in listed] == ["p02", "p03"]


async def test_channels_count_subscribers_peers_and_rates(hub: Hub) -> None:
    alice = await hub.connect("alice")
    alice_tab = await hub.connect("alice")
    bob = await hub.connect("bob")
    watcher = await hub.connect("watcher")
    for client in (alice, alice_tab, bob):
        await client.subscribe("chat/lobby")
    await watcher.subscribe("devices/*/events")
    device = await hub.connect("device-1")
    for _ in range(10):
        await device.publish("devices/1/events", {"t": 20})
    await hub.node.publish_from_server("app", "chat/lobby", b'"hello"')
    hub.clock.now += 2

    listed = await hub.node.list_channels("app")
    assert [(c.channel, c.subscribers, c.peers) for c in listed] == [
        ("chat/lobby", 3, 2),  # three connections, two peers
        ("devices/1/events", 0, 0),  # published to, watched only through a pattern
    ]
    rates = {c.channel: c.messages_per_second for c in listed}
    assert rates["devices/1/events"] == pytest.approx(5.0)  # 10 over 2 s
    assert rates["chat/lobby"] == pytest.approx(0.5)

    assert [c.channel for c in await hub.node.list_channels("app", prefix="dev")] == [
        "devices/1/events"
    ]
    assert [c.channel for c in await hub.node.list_channels("app", limit=1)] == ["chat/lobby"]
    assert await hub.node.list_channels("other") == []

    # Quiet for two windows and unsubscribed: it drops out of the listing.
    hub.clock.now += 2 * WINDOW_S + 1
    await hub.node.list_channels("app")
    hub.clock.now += 1
    assert [c.channel for c in await hub.node.list_channels("app")] == ["chat/lobby"]
    for client in (alice, alice_tab, bob):
        await client.unsubscribe("chat/lobby")
    assert await hub.node.list_channels("app") == []


async def test_nodes_report_the_apps_connections_and_channels(hub: Hub) -> None:
    alice = await hub.connect("alice")
    await hub.connect("bob")
    await hub.connect("carol", app_id="other")
    await alice.subscribe("room")
    (answer,) = await hub.node.list_nodes("app")
    assert (answer.node, answer.connection_count, answer.channel_count) == ("n1", 2, 1)


async def test_channels_can_be_limited_to_a_scope(hub: Hub) -> None:
    alice = await hub.connect("alice")
    for channel in ("room/1", "room/2", "admin/x"):
        await alice.subscribe(channel, channel)
    scoped = await hub.node.list_channels("app", patterns=("room/*",))
    assert [c.channel for c in scoped] == ["room/1", "room/2"]
    limited = await hub.node.list_channels("app", patterns=("room/*", "admin/**"), limit=2)
    assert [c.channel for c in limited] == ["admin/x", "room/1"]
