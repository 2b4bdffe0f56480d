"""The in-memory broker and stores: the single-process reference backends."""

from __future__ import annotations

import pytest

from hubbub.brokers.memory import MemoryBroker, MemoryPresenceStore, MemoryUsageStore
from hubbub.core.broker import AppQuota, Direct, PresenceDelta, PresenceEntry, Publication


class RecordingHandler:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def deliver_publication(self, publication: Publication) -> int:
        self.calls.append(("publication", publication))
        return 3

    def deliver_direct(self, direct: Direct) -> int:
        self.calls.append(("direct", direct))
        return 2

    def deliver_presence(self, delta: PresenceDelta) -> None:
        self.calls.append(("presence", delta))

    def disconnect_local_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int:
        self.calls.append(("disconnect", (app_id, peer_id, code, reason)))
        return 1


async def test_broker_hands_everything_to_its_handler_in_order() -> None:
    broker, handler = MemoryBroker(), RecordingHandler()
    await broker.start(handler)
    for watch in (broker.watch_channel, broker.unwatch_channel, broker.watch_pattern):
        await watch("a", "c")
    await broker.unwatch_pattern("a", "c*")
    await broker.register_peer("a", "p")
    await broker.unregister_peer("a", "p")
    publication = Publication("a", "c", "p", b"1", None, "n:1")
    direct = Direct("a", "q", "p", b"2", None, "n:1")
    delta = PresenceDelta("a", "c", "p", (PresenceEntry("p", None),), ())
    assert await broker.publish(publication) == 3
    assert await broker.send_direct(direct) == 2
    await broker.publish_presence(delta)
    assert await broker.disconnect_peer("a", "p", 4020, "bye") == 1
    assert handler.calls == [
        ("publication", publication),
        ("direct", direct),
        ("presence", delta),
        ("disconnect", ("a", "p", 4020, "bye")),
    ]


async def test_broker_refuses_work_before_start_and_after_stop() -> None:
    broker = MemoryBroker()
    with pytest.raises(RuntimeError, match="not started"):
        await broker.publish(Publication("a", "c", "p", b"1", None, None))
    await broker.start(RecordingHandler())
    await broker.stop()
    with pytest.raises(RuntimeError, match="not started"):
        await broker.send_direct(Direct("a", "q", "p", b"1", None, None))


async def test_presence_counts_connections_per_peer() -> None:
    store = MemoryPresenceStore()
    alice = PresenceEntry("alice", None)
    assert await store.add("app", "room", alice, "c1") == 0
    assert await store.add("app", "room", alice, "c2") == 1
    assert await store.add("app", "room", alice, "c2") == 2  # same connection: no double count
    assert await store.members("app", "room") == [alice]
    assert await store.remove("app", "room", "alice", "c1") == 1
    assert await store.remove("app", "room", "alice", "c1") == 1
    assert await store.remove("app", "room", "alice", "c2") == 0
    assert await store.members("app", "room") == []
    assert await store.remove("app", "room", "alice", "c2") == 0
    assert await store.remove("app", "nowhere", "alice", "c2") == 0


async def test_presence_keeps_join_order_and_newest_metadata() -> None:
    store = MemoryPresenceStore()
    await store.add("app", "room", PresenceEntry("b", None), "1")
    await store.add("app", "room", PresenceEntry("a", b'{"v":1}'), "2")
    await store.add("app", "room", PresenceEntry("c", None), "3")
    await store.add("app", "room", PresenceEntry("a", b'{"v":2}'), "4")
    members = await store.members("app", "room")
    assert [(m.peer_id, m.metadata) for m in members] == [
        ("b", None),
        ("a", b'{"v":2}'),
        ("c", None),
    ]


async def test_presence_is_separate_per_app_and_channel() -> None:
    store = MemoryPresenceStore()
    await store.add("app1", "room", PresenceEntry("a", None), "1")
    await store.add("app2", "room", PresenceEntry("b", None), "2")
    await store.add("app1", "other", PresenceEntry("c", None), "3")
    assert [m.peer_id for m in await store.members("app1", "room")] == ["a"]
    assert [m.peer_id for m in await store.members("app2", "room")] == ["b"]
    assert await store.remove("app2", "room", "a", "1") == 0
    assert [m.peer_id for m in await store.members("app1", "room")] == ["a"]


async def test_usage_concurrent_cap_and_peak() -> None:
    usage = MemoryUsageStore()
    quota = AppQuota(max_concurrent_connections=2)
    assert await usage.open_connection("app", quota)
    assert await usage.open_connection("app", quota)
    assert not await usage.open_connection("app", quota)
    assert await usage.open_connection("other", quota)
    await usage.close_connection("app")
    assert await usage.open_connection("app", quota)
    for _ in range(5):
        await usage.close_connection("app")  # never below zero
    snapshot = await usage.snapshot("app", quota, 0.0)
    assert (snapshot.concurrent_now, snapshot.peak_concurrent) == (0, 2)


async def test_usage_message_quota_counts_every_attempt_and_resets_each_period() -> None:
    usage = MemoryUsageStore()
    quota = AppQuota(max_messages_per_period=2, period_s=100)
    results = [await usage.count_message("app", quota, 150.0) for _ in range(3)]
    assert results == [True, True, False]
    snapshot = await usage.snapshot("app", quota, 199.0)
    assert (snapshot.messages_used, snapshot.period_start, snapshot.period_end) == (3, 100, 200)
    # A new period starts from zero.
    assert (await usage.snapshot("app", quota, 200.0)).messages_used == 0
    assert await usage.count_message("app", quota, 250.0)
    assert (await usage.snapshot("app", quota, 250.0)).messages_used == 1


async def test_usage_without_quota_never_refuses() -> None:
    usage = MemoryUsageStore()
    quota = AppQuota()
    assert all([await usage.count_message("app", quota, 0.0) for _ in range(1000)])
    assert all([await usage.open_connection("app", quota) for _ in range(1000)])


def test_period_bounds() -> None:
    quota = AppQuota(period_s=30)
    assert quota.period_bounds(0.0) == (0, 30)
    assert quota.period_bounds(59.9) == (30, 60)
    assert quota.period_bounds(60.0) == (60, 90)
