"""The Broker, PresenceStore and UsageStore contract, proven by memory and Redis alike.

Each test uses the nodes of one backend; with Redis every test runs on a fresh key prefix.
"""

from __future__ import annotations

from hubbub.core.broker import (
    AppQuota,
    Direct,
    NodeQuery,
    PresenceDelta,
    PresenceEntry,
    Publication,
)
from tests.brokers.conftest import Backend

# With two shards this app lives on the second one, away from the liveness keys.
APP = "tenant-a"


def publication(channel: str, data: bytes = b'{"n":1}', sender: str = "alice") -> Publication:
    return Publication(APP, channel, sender, data, b'{"name":"Alice"}', "n1:1")


async def test_publish_reaches_the_calling_node_and_counts_it(backend: Backend) -> None:
    node = await backend.node()
    node.handler.local_subscribers = 3
    await node.broker.watch_channel(APP, "room")
    reached = await node.broker.publish(publication("room"))
    assert reached == 3
    assert node.handler.of("publication") == [publication("room")]


async def test_raw_bytes_and_metadata_travel_untouched(backend: Backend) -> None:
    node = await backend.node()
    await node.broker.watch_channel(APP, "room")
    odd = publication("room", data='{"x":"\u00e9\\u0000","y":[1,2.5,null]}'.encode())
    await node.broker.publish(odd)
    assert node.handler.of("publication") == [odd]


async def test_direct_counts_connections_and_zero_means_offline(backend: Backend) -> None:
    node = await backend.node()
    node.handler.local_peer_connections["bob"] = 2
    await node.broker.register_peer(APP, "bob")
    direct = Direct(APP, "bob", "alice", b"{}", None, "n1:1")
    assert await node.broker.send_direct(direct) == 2
    offline = Direct(APP, "carol", "alice", b"{}", None, "n1:1")
    assert await node.broker.send_direct(offline) == 0
    assert node.handler.of("direct") == [direct]


async def test_disconnect_peer_closes_its_connections(backend: Backend) -> None:
    node = await backend.node()
    node.handler.local_peer_connections["bob"] = 2
    await node.broker.register_peer(APP, "bob")
    assert await node.broker.disconnect_peer(APP, "bob", 4009, "disconnected by admin") == 2
    assert node.handler.of("disconnect") == [(APP, "bob", 4009, "disconnected by admin")]


async def test_a_query_is_answered_by_the_asking_node_first(backend: Backend) -> None:
    node = await backend.node()
    node.handler.local_peer_connections["bob"] = 2
    query = NodeQuery(APP, "channels", prefix="chat/", limit=7)
    answers = await node.broker.query_nodes(query)
    assert [a.connection_count for a in answers] == [2]
    assert [c.channel for c in answers[0].channels] == ["chat/" + node.handler.node_id]
    assert node.handler.questions == [query]


async def test_presence_count_is_the_number_of_peers(backend: Backend) -> None:
    node = await backend.node()
    presence = node.presence
    assert await presence.count(APP, "room") == 0
    await presence.add(APP, "room", PresenceEntry("alice", None), "c1")
    await presence.add(APP, "room", PresenceEntry("alice", None), "c2")
    await presence.add(APP, "room", PresenceEntry("bob", b"{}"), "c3")
    await presence.add(APP, "other-room", PresenceEntry("carol", None), "c4")
    assert await presence.count(APP, "room") == 2
    await presence.remove(APP, "room", "bob", "c3")
    assert await presence.count(APP, "room") == 1


async def test_one_senders_events_keep_their_order(backend: Backend) -> None:
    node = await backend.node()
    node.handler.local_peer_connections["bob"] = 1
    await node.broker.watch_channel(APP, "room")
    await node.broker.register_peer(APP, "bob")
    entry = PresenceEntry("alice", None)
    await node.broker.publish_presence(PresenceDelta(APP, "room", "alice", (entry,), ()))
    for n in range(20):
        await node.broker.publish(publication("room", f'{{"n":{n}}}'.encode()))
        await node.broker.send_direct(Direct(APP, "bob", "alice", f"{n}".encode(), None, None))
    kinds = [kind for kind, _ in node.handler.events]
    assert kinds == ["presence"] + ["publication", "direct"] * 20


async def test_presence_counts_connections_per_peer(backend: Backend) -> None:
    node = await backend.node()
    store = node.presence
    alice = PresenceEntry("alice", b'{"v":1}')
    assert await store.add(APP, "room", alice, "c1") == 0
    assert await store.add(APP, "room", PresenceEntry("bob", None), "c2") == 0
    newer = PresenceEntry("alice", b'{"v":2}')
    assert await store.add(APP, "room", newer, "c3") == 1
    # Each peer once, in join order, with the newest connection's metadata.
    assert await store.members(APP, "room") == [newer, PresenceEntry("bob", None)]
    assert await store.remove(APP, "room", "alice", "c1") == 1
    assert [m.peer_id for m in await store.members(APP, "room")] == ["alice", "bob"]
    assert await store.remove(APP, "room", "alice", "c3") == 0
    assert await store.members(APP, "room") == [PresenceEntry("bob", None)]


async def test_presence_is_per_app_and_channel(backend: Backend) -> None:
    node = await backend.node()
    await node.presence.add(APP, "room", PresenceEntry("alice", None), "c1")
    assert await node.presence.members(APP, "other") == []
    assert await node.presence.members("app2", "room") == []
    assert await node.presence.remove(APP, "room", "nobody", "c9") == 0


async def test_presence_rejoin_keeps_order_after_leaving(backend: Backend) -> None:
    node = await backend.node()
    store = node.presence
    await store.add(APP, "room", PresenceEntry("alice", None), "c1")
    await store.add(APP, "room", PresenceEntry("bob", None), "c2")
    await store.remove(APP, "room", "alice", "c1")
    await store.add(APP, "room", PresenceEntry("alice", None), "c3")
    assert [m.peer_id for m in await store.members(APP, "room")] == ["bob", "alice"]


async def test_concurrent_connection_cap(backend: Backend) -> None:
    node = await backend.node()
    quota = AppQuota(max_concurrent_connections=2)
    assert await node.usage.open_connection(APP, quota)
    assert await node.usage.open_connection(APP, quota)
    assert not await node.usage.open_connection(APP, quota)
    await node.usage.close_connection(APP)
    assert await node.usage.open_connection(APP, quota)
    snapshot = await node.usage.snapshot(APP, quota, 1000.0)
    assert (snapshot.concurrent_now, snapshot.peak_concurrent) == (2, 2)


async def test_message_quota_per_period(backend: Backend) -> None:
    node = await backend.node()
    quota = AppQuota(max_messages_per_period=2, period_s=100)
    now = 1_000_050.0
    assert await node.usage.count_message(APP, quota, now)
    assert await node.usage.count_message(APP, quota, now)
    assert not await node.usage.count_message(APP, quota, now)
    snapshot = await node.usage.snapshot(APP, quota, now)
    assert snapshot.messages_used == 3
    assert (snapshot.period_start, snapshot.period_end) == (1_000_000, 1_000_100)
    # A new period starts from zero.
    assert await node.usage.count_message(APP, quota, now + 100)
    assert (await node.usage.snapshot(APP, quota, now + 100)).messages_used == 1
