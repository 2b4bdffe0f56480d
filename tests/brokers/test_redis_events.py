"""Lifecycle events on Redis: decided once in the presence scripts, sent by one node per
channel, in order; a dead node's members leave once."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from hubbub.brokers.redis_broker import RedisBroker
from hubbub.brokers.redis_stores import RedisPresenceStore
from hubbub.core.broker import PresenceEntry
from hubbub.core.events import ChannelEvent, ChannelEventName
from tests.brokers.conftest import BackendNode, RedisBackend
from tests.brokers.test_redis_cluster import ClusterBackend
from tests.brokers.test_redis_nodes import APP, crash
from tests.support.redis import SHARED_URL, delete_prefix, redis_cluster, unique_prefix

pytestmark = pytest.mark.integration

OCCUPIED = ChannelEventName.CHANNEL_OCCUPIED
VACATED = ChannelEventName.CHANNEL_VACATED
ADDED = ChannelEventName.MEMBER_ADDED
REMOVED = ChannelEventName.MEMBER_REMOVED


@dataclass
class NodeSink:
    """One node's webhook queue: what it would send."""

    label: str
    events: list[ChannelEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, app_id: str, name: ChannelEventName) -> bool:
        return True

    def emit(self, event: ChannelEvent) -> None:
        self.events.append(event)
        self.changed.set()


async def wait_until(sinks: Iterable[NodeSink], condition: object, timeout_s: float = 8.0) -> None:
    sinks = list(sinks)
    assert callable(condition)
    async with asyncio.timeout(timeout_s):
        while not condition():
            waiters = [asyncio.ensure_future(s.changed.wait()) for s in sinks]
            for s in sinks:
                s.changed.clear()
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()


async def nodes_with_sinks(backend: RedisBackend, count: int) -> list[tuple[BackendNode, NodeSink]]:
    made = []
    for i in range(count):
        sink = NodeSink(f"n{i}")
        made.append((await backend.node(f"n{i}-{backend.prefix[-4:]}", sink), sink))
    return made


def check_lifecycle(events: list[ChannelEvent]) -> None:
    """One channel's events make sense in the order they were sent."""
    occupied = False
    present: set[str] = set()
    for event in events:
        if event.name is OCCUPIED:
            assert not occupied and not present, events
            occupied = True
        elif event.name is ADDED:
            assert occupied and event.user_id not in present, events
            present.add(event.user_id or "")
        elif event.name is REMOVED:
            assert event.user_id in present, events
            present.discard(event.user_id or "")
        elif event.name is VACATED:
            assert occupied and not present, events
            occupied = False
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs), seqs


async def churn_three_nodes_and_check(backend: RedisBackend) -> None:
    made = await nodes_with_sinks(backend, 3)
    channels = [f"room-{n}" for n in range(4)]
    rng = random.Random(7)

    # Each "connection" lives on one node; peers have connections on several nodes.
    async def churn(node: BackendNode, conns: list[tuple[str, str, str]]) -> None:
        for _ in range(3):
            for channel, peer, conn in conns:
                await node.presence.add(APP, channel, PresenceEntry(peer, None), conn)
                await asyncio.sleep(0)
            rng.shuffle(conns)
            for channel, peer, conn in conns:
                await node.presence.remove(APP, channel, peer, conn)

    plans = []
    for i, (node, _) in enumerate(made):
        conns = [
            (channel, f"peer-{p}", f"n{i}:{channel}:{p}") for channel in channels for p in range(3)
        ]
        plans.append(churn(node, conns))
    await asyncio.gather(*plans)
    sinks = [sink for _, sink in made]

    def all_vacated() -> bool:
        sent = [e for s in sinks for e in s.events]
        counts = [Counter(e.name for e in sent if e.channel == c) for c in channels]
        return all(n[VACATED] >= 1 and n[OCCUPIED] == n[VACATED] for n in counts)

    await wait_until(sinks, all_vacated)
    for channel in channels:
        senders = [sink for sink in sinks if any(e.channel == channel for e in sink.events)]
        assert len(senders) == 1, channel  # one node sends each channel's events
        events = [e for e in senders[0].events if e.channel == channel]
        check_lifecycle(events)
        assert events[-1].name is VACATED
        first = events[0].seq or 0
        assert [e.seq for e in events] == list(range(first, first + len(events)))
    for node, _ in made:
        assert node.events is not None and node.events.orderer.gaps_skipped == 0


async def test_concurrent_joins_and_leaves_on_three_nodes_give_each_event_once(
    redis_backend: RedisBackend,
) -> None:
    await churn_three_nodes_and_check(redis_backend)


async def test_the_same_on_a_redis_cluster() -> None:
    """The channel's counter and sender live in its slot; hand-overs use sharded pub/sub."""
    async with redis_cluster() as servers:
        backend = ClusterBackend(servers[0].url, unique_prefix())
        try:
            await churn_three_nodes_and_check(backend)
        finally:
            await backend.close()


async def test_a_dead_nodes_members_leave_once_when_the_ttl_reaps_them() -> None:
    prefix = unique_prefix()
    backend = RedisBackend(SHARED_URL, prefix, presence_ttl_s=1.5)
    try:
        made = await nodes_with_sinks(backend, 3)
        (a, _), (b, b_sink), (c, c_sink) = made
        await a.presence.add(APP, "room", PresenceEntry("alice", None), "a:1")
        await a.presence.add(APP, "room", PresenceEntry("carol", None), "a:2")
        await b.presence.add(APP, "room", PresenceEntry("carol", None), "b:1")
        await a.presence.add(APP, "lonely", PresenceEntry("alice", None), "a:3")
        sinks = [b_sink, c_sink]
        await wait_until(
            sinks, lambda: sum(len(s.events) for s in sinks) + len(made[0][1].events) >= 5
        )
        for _, sink in made:
            sink.events.clear()
        backend.nodes.remove(a)
        await crash(a)
        # Both survivors try to reap at once: the scripts decide each removal once.
        broker_b, broker_c = b.broker, c.broker
        assert isinstance(broker_b, RedisBroker) and isinstance(broker_c, RedisBroker)

        def left() -> list[tuple[str, str, str | None]]:
            return sorted((e.name.value, e.channel, e.user_id) for s in sinks for e in s.events)

        expected = [
            ("channel_vacated", "lonely", None),
            ("member_removed", "lonely", "alice"),
            ("member_removed", "room", "alice"),
        ]
        await wait_until(sinks, lambda: left() == expected)
        a_id = a.broker._node_id  # type: ignore[attr-defined]
        await asyncio.gather(broker_b.liveness.reap(a_id), broker_c.liveness.reap(a_id))
        assert left() == expected  # carol is present through b: no member_removed for her
    finally:
        await backend.close()
        await delete_prefix(6379, prefix)


async def test_lifecycle_events_are_not_numbered_when_no_webhook_wants_them(
    redis_backend: RedisBackend,
) -> None:
    quiet = await redis_backend.node()  # no webhooks: no counter, no sender record
    store = quiet.presence
    assert isinstance(store, RedisPresenceStore)
    await store.add(APP, "room", PresenceEntry("alice", None), "x:1")
    shard, keys = store._keys(APP, "room")
    client = store._shards.links[shard].client
    assert await client.exists(keys[5], keys[6]) == 0  # hseq, sender
    sink = NodeSink("loud")
    loud = await redis_backend.node(events=sink)
    await loud.presence.add(APP, "room", PresenceEntry("bob", None), "y:1")
    assert await client.exists(keys[5], keys[6]) == 2
    assert [(e.name, e.seq) for e in sink.events] == [(ADDED, 1)]
    assert await client.get(keys[6]) == loud.broker._node_id.encode()  # type: ignore[attr-defined]
