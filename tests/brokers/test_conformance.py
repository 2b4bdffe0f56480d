"""The Broker, PresenceStore and UsageStore contract, proven by memory and Redis alike.

Each test uses the nodes of one backend; with Redis every test runs on a fresh key prefix.
"""

from __future__ import annotations

import asyncio

from hubbub.core.broker import (
    AppQuota,
    Direct,
    NodeQuery,
    PresenceDelta,
    PresenceEntry,
    Publication,
)
from hubbub.core.history import Published, Recording, Retention, StreamPosition
from tests.brokers.conftest import Backend, MemoryBackend, RedisBackend
from tests.support.redis import PrivateRedis, redis_cli

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


# --- history and idempotent publish (spec 16.1, 16.2; contract in hubbub.core.history) -------

KEEP = Retention(size=100, ttl_s=600.0)


def recorded(
    retention: Retention | None = KEEP, message_id: str | None = None, window_s: float = 120.0
) -> Recording:
    return Recording(retention, message_id, window_s)


def numbered(n: int, channel: str = "room") -> Publication:
    return publication(channel, str(n).encode())


def offsets_of(items: list[object]) -> list[int]:
    found = []
    for item in items:
        assert isinstance(item, Publication) and item.position is not None
        found.append(item.position.offset)
    return found


async def test_history_offsets_count_up_and_travel_with_the_publication(
    history_backend: Backend,
) -> None:
    node = await history_backend.node()
    await node.broker.watch_channel(APP, "room")
    empty = await node.history.read(APP, "room", KEEP, after=0)
    epoch = empty.position.epoch
    assert epoch and empty.position.offset == 0 and empty.records == () and empty.complete
    outcomes = [await node.broker.publish_recorded(numbered(n), recorded()) for n in range(3)]
    assert [o.position for o in outcomes] == [StreamPosition(n, epoch) for n in (1, 2, 3)]
    assert not any(o.duplicate for o in outcomes)
    await node.handler.wait_for(lambda: len(node.handler.of("publication")) == 3)
    assert offsets_of(node.handler.of("publication")) == [1, 2, 3]

    page = await node.history.read(APP, "room", KEEP, after=0)
    assert page.position == StreamPosition(3, epoch) and page.complete
    expected_ms = int(history_backend.clock.now * 1000)
    assert [
        (r.offset, r.data, r.sender, r.sender_metadata, r.timestamp_ms) for r in page.records
    ] == [(n + 1, str(n).encode(), "alice", b'{"name":"Alice"}', expected_ms) for n in range(3)]
    latest = await node.history.read(APP, "room", KEEP, limit=2)
    assert [r.offset for r in latest.records] == [2, 3]
    assert [
        r.offset for r in (await node.history.read(APP, "room", KEEP, after=1, limit=1)).records
    ] == [2]
    assert (await node.history.read(APP, "room", KEEP, after=3)).complete
    # An offset the channel never reached is not "nothing missed".
    assert not (await node.history.read(APP, "room", KEEP, after=9)).complete
    # Channels and apps do not share offsets.
    other = await node.broker.publish_recorded(numbered(0, "other"), recorded())
    assert other.position is not None and other.position.offset == 1


async def test_concurrent_publishers_on_two_nodes_get_unique_consecutive_offsets(
    history_backend: Backend,
) -> None:
    a = await history_backend.node()
    b = await history_backend.node() if history_backend.multi_node else a
    watcher = await history_backend.node() if history_backend.multi_node else a
    await watcher.broker.watch_channel(APP, "room")
    total = 80
    outcomes = await asyncio.gather(
        *(
            (a if n % 2 else b).broker.publish_recorded(numbered(n), recorded())
            for n in range(total)
        )
    )
    positions = [o.position for o in outcomes]
    assert all(p is not None for p in positions)
    assert sorted(p.offset for p in positions if p) == list(range(1, total + 1))
    assert len({p.epoch for p in positions if p}) == 1
    await watcher.handler.wait_for(lambda: len(watcher.handler.of("publication")) == total)
    # Every node gets the channel's publications in offset order, whoever published them.
    assert offsets_of(watcher.handler.of("publication")) == list(range(1, total + 1))
    page = await watcher.history.read(APP, "room", KEEP, after=0)
    assert [r.offset for r in page.records] == list(range(1, total + 1))


async def test_history_keeps_history_size_publications(history_backend: Backend) -> None:
    node = await history_backend.node()
    small = Retention(size=3, ttl_s=600.0)
    for n in range(5):
        await node.broker.publish_recorded(numbered(n), recorded(small))
    page = await node.history.read(APP, "room", small, after=0)
    assert [r.offset for r in page.records] == [3, 4, 5]
    assert not page.complete  # offsets 1 and 2 are gone
    assert (await node.history.read(APP, "room", small, after=2)).complete
    assert [r.offset for r in (await node.history.read(APP, "room", small, limit=10)).records] == [
        3,
        4,
        5,
    ]


async def test_history_drops_publications_older_than_its_ttl(history_backend: Backend) -> None:
    node = await history_backend.node()
    short = Retention(size=100, ttl_s=10.0)
    clock = history_backend.clock
    await node.broker.publish_recorded(numbered(1), recorded(short))
    await node.broker.publish_recorded(numbered(2), recorded(short))
    clock.now += 5
    await node.broker.publish_recorded(numbered(3), recorded(short))
    clock.now += 6  # the first two are 11 s old now
    page = await node.history.read(APP, "room", short, after=0)
    assert [r.offset for r in page.records] == [3]
    assert not page.complete and page.position.offset == 3
    assert (await node.history.read(APP, "room", short, after=2)).complete
    clock.now += 5
    page = await node.history.read(APP, "room", short, after=0)
    assert page.records == () and page.position.offset == 3
    # The epoch outlives the records: the next publication continues the count.
    fourth = await node.broker.publish_recorded(numbered(4), recorded(short))
    assert fourth.position == StreamPosition(4, page.position.epoch)


async def test_a_message_id_is_delivered_once_on_every_node(history_backend: Backend) -> None:
    a = await history_backend.node()
    b = await history_backend.node() if history_backend.multi_node else a
    await a.broker.watch_channel(APP, "room")
    first = await a.broker.publish_recorded(numbered(1), recorded(message_id="m-1"))
    again = await b.broker.publish_recorded(numbered(1), recorded(message_id="m-1"))
    assert not first.duplicate and again.duplicate
    assert again.position == first.position and again.reached == 0
    # The same id elsewhere (another channel, another app) is another message.
    elsewhere = await b.broker.publish_recorded(numbered(1, "lobby"), recorded(message_id="m-1"))
    assert not elsewhere.duplicate
    other_app = Publication("app2", "room", "alice", b"1", None, None)
    assert not (await b.broker.publish_recorded(other_app, recorded(message_id="m-1"))).duplicate
    following = await a.broker.publish_recorded(numbered(2), recorded(message_id="m-2"))
    assert following.position is not None and first.position is not None
    assert following.position.offset == first.position.offset + 1  # the duplicate took none

    def in_room() -> list[object]:
        return [
            p
            for p in a.handler.of("publication")
            if isinstance(p, Publication) and (p.app_id, p.channel) == (APP, "room")
        ]

    await a.handler.wait_for(lambda: len(in_room()) == 2)
    assert offsets_of(in_room()) == [1, 2]
    page = await a.history.read(APP, "room", KEEP, after=0)
    assert [r.data for r in page.records] == [b"1", b"2"]


async def test_a_message_id_on_a_channel_without_history(history_backend: Backend) -> None:
    a = await history_backend.node()
    b = await history_backend.node() if history_backend.multi_node else a
    await a.broker.watch_channel(APP, "plain")
    a.handler.local_subscribers = 2
    first = await a.broker.publish_recorded(numbered(1, "plain"), recorded(None, "m-1"))
    assert first == Published(2, None)
    again = await b.broker.publish_recorded(numbered(1, "plain"), recorded(None, "m-1"))
    assert again == Published(0, None, duplicate=True)
    assert len(a.handler.of("publication")) == 1
    assert all(p.position is None for p in a.handler.of("publication"))  # type: ignore[attr-defined]


async def test_a_message_id_can_be_used_again_after_the_window(history_backend: Backend) -> None:
    node = await history_backend.node()
    window_s = 0.2
    first = await node.broker.publish_recorded(numbered(1), recorded(None, "m-1", window_s))
    assert not first.duplicate
    assert (
        await node.broker.publish_recorded(numbered(1), recorded(None, "m-1", window_s))
    ).duplicate
    # Memory follows the store's clock; Redis expires the key by its own (PX).
    history_backend.clock.now += 1
    async with asyncio.timeout(5):
        while (
            await node.broker.publish_recorded(numbered(1), recorded(None, "m-1", window_s))
        ).duplicate:
            await asyncio.sleep(0.05)  # Redis key expiry has no event to await: poll, bounded


async def test_a_restarted_memory_node_has_a_new_epoch() -> None:
    backend = MemoryBackend()
    try:
        node = await backend.node()
        before = await node.broker.publish_recorded(numbered(1), recorded())
        node = await backend.restart()
        page = await node.history.read(APP, "room", KEEP, after=1)
        assert before.position is not None
        assert page.position.epoch != before.position.epoch and page.position.offset == 0
        after = await node.broker.publish_recorded(numbered(2), recorded())
        assert after.position == StreamPosition(1, page.position.epoch)
    finally:
        await backend.close()


async def test_a_flushed_redis_gives_the_channel_a_new_epoch(
    private_backend: tuple[RedisBackend, PrivateRedis],
) -> None:
    backend, server = private_backend
    a, b = await backend.node(), await backend.node()
    before = await a.broker.publish_recorded(numbered(1), recorded(message_id="m-1"))
    assert before.position is not None
    assert "OK" in await redis_cli(server.port, "FLUSHALL")
    page = await b.history.read(APP, "room", KEEP, after=1)
    assert page.position.epoch != before.position.epoch and page.position.offset == 0
    assert not page.complete or page.position.epoch != before.position.epoch
    again = await a.broker.publish_recorded(numbered(1), recorded(message_id="m-1"))
    assert again.position == StreamPosition(1, page.position.epoch) and not again.duplicate
