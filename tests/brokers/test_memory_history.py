"""The memory history store's bounds: the global byte cap (least recently used channels go,
with their epoch), the periodic sweep of expired records, and the bounded message-id map."""

from __future__ import annotations

from hubbub.brokers.memory_history import (
    CHANNEL_OVERHEAD_BYTES,
    RECORD_OVERHEAD_BYTES,
    MemoryHistoryStore,
)
from hubbub.core.broker import Publication
from hubbub.core.history import Retention
from tests.support.clock import FakeClock

KEEP = Retention(size=10, ttl_s=60)


def pub(channel: str, data: bytes = b"1") -> Publication:
    return Publication("app", channel, "a", data, None, None)


def record_bytes(data: bytes = b"1") -> int:
    return RECORD_OVERHEAD_BYTES + len(data) + len("a")


async def test_the_cap_evicts_the_least_recently_used_channel_and_its_epoch() -> None:
    per_channel = CHANNEL_OVERHEAD_BYTES + 2 * record_bytes()
    store = MemoryHistoryStore(max_bytes=3 * per_channel)
    c_epoch = store.append(pub("c"), KEEP).epoch
    for channel in ("c", "b", "b", "a", "a"):  # two records each; "c" is least recently used
        store.append(pub(channel), KEEP)
    old_epoch = (await store.read("app", "a", KEEP)).position.epoch
    assert store.stats.retained_bytes == 3 * per_channel
    store.append(pub("d"), KEEP)  # over the cap: "c" goes
    assert store.stats.channels_evicted == 1 and store.stats.evicted_by_cap == 2
    assert store.stats.retained_bytes <= 3 * per_channel
    assert (await store.read("app", "a", KEEP)).position.epoch == old_epoch
    evicted = await store.read("app", "c", KEEP, after=2)
    assert evicted.position.offset == 0 and evicted.records == ()  # a new history...
    assert evicted.position.epoch != c_epoch and not evicted.complete  # ...in a new epoch


async def test_one_channel_over_the_cap_keeps_its_newest_record() -> None:
    store = MemoryHistoryStore(max_bytes=CHANNEL_OVERHEAD_BYTES + 2 * record_bytes(b"x" * 100))
    for _ in range(5):
        store.append(pub("a", b"x" * 100), KEEP)
    page = await store.read("app", "a", KEEP, after=0)
    assert [r.offset for r in page.records] == [4, 5] and not page.complete


async def test_the_sweep_drops_expired_records_of_idle_channels() -> None:
    clock = FakeClock()
    store = MemoryHistoryStore(clock=clock)
    short = Retention(size=10, ttl_s=5)
    store.append(pub("idle"), short)
    store.append(pub("idle"), short)
    before = store.stats.retained_bytes
    clock.now += 6
    store.sweep()
    assert store.stats.evicted_by_ttl == 2
    assert store.stats.retained_bytes == before - 2 * record_bytes()


async def test_message_ids_are_bounded_and_expire() -> None:
    clock = FakeClock()
    store = MemoryHistoryStore(clock=clock, max_message_ids=2)
    for message_id in ("m1", "m2", "m3"):
        store.claim("app", "c", message_id, 10, None)
    assert store.stats.dedup_ids_evicted == 1
    assert store.first_claim("app", "c", "m1") == (False, None)  # forgotten early (counted)
    assert store.first_claim("app", "c", "m3")[0]
    clock.now += 11
    assert store.first_claim("app", "c", "m3") == (False, None)
