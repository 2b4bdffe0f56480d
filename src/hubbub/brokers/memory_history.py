"""Channel history and message-id de-duplication for one process (the memory broker's).

History: a ring (``deque``) of records per channel, trimmed to the channel's ``history_size``
and ``history_ttl_s`` whenever the channel is used and by a periodic sweep. Channels are kept
in least-recently-used order; when everything retained passes ``max_bytes`` (an estimate:
payloads plus a fixed overhead per record and per channel), whole channels are dropped from
the least recently used end: their epoch goes with them, so a client recovering from them is
told ``recovered: false``. The epoch of every channel is new in every process (a restart loses
the history).

De-duplication: message ids in a time-ordered map (insertion order is expiry order, because the
window is one server setting), expired from the front and bounded by ``max_message_ids``; an
id forgotten early by that bound is counted (``dedup_ids_evicted``).

Nothing here awaits, so an append and the delivery that follows it are one step on the loop.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Final

from hubbub.core.broker import Publication
from hubbub.core.history import (
    HistoryPage,
    HistoryRecord,
    HistoryStats,
    HistoryStore,
    Retention,
    StreamPosition,
)

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_MESSAGE_IDS: Final = 200_000
# Rough CPython costs beyond the payload bytes: a record object and its deque slot; a channel's
# log, its key tuple and its place in the LRU map.
RECORD_OVERHEAD_BYTES: Final = 200
CHANNEL_OVERHEAD_BYTES: Final = 500


def new_epoch() -> str:
    return secrets.token_hex(8)


class _ChannelLog:
    __slots__ = ("epoch", "offset", "records", "retention", "size_bytes")

    def __init__(self, epoch: str, retention: Retention) -> None:
        self.epoch = epoch
        self.offset = 0
        self.records: deque[HistoryRecord] = deque()
        self.retention = retention
        self.size_bytes = CHANNEL_OVERHEAD_BYTES


def _record_bytes(record: HistoryRecord) -> int:
    metadata = record.sender_metadata
    return (
        RECORD_OVERHEAD_BYTES
        + len(record.data)
        + len(record.sender)
        + (len(metadata) if metadata is not None else 0)
    )


@dataclass(frozen=True, slots=True)
class _Claim:
    expires_at: float
    position: StreamPosition | None


class MemoryHistoryStore(HistoryStore):
    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_message_ids: int = DEFAULT_MAX_MESSAGE_IDS,
        clock: Callable[[], float] = time.time,
        epoch_factory: Callable[[], str] = new_epoch,
    ) -> None:
        self._max_bytes = max_bytes
        self._max_ids = max_message_ids
        self._clock = clock
        self._new_epoch = epoch_factory
        self._logs: OrderedDict[tuple[str, str], _ChannelLog] = OrderedDict()
        self._claims: OrderedDict[tuple[str, str, str], _Claim] = OrderedDict()
        self.stats = HistoryStats()

    # --- history ----------------------------------------------------------------------------

    def _log(self, app_id: str, channel: str, retention: Retention) -> _ChannelLog:
        key = (app_id, channel)
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _ChannelLog(self._new_epoch(), retention)
            self.stats.retained_bytes += log.size_bytes
        else:
            self._logs.move_to_end(key)
            log.retention = retention
        return log

    def _trim(self, log: _ChannelLog, now_ms: int) -> None:
        records, stats = log.records, self.stats
        oldest_kept_ms = now_ms - int(log.retention.ttl_s * 1000)
        while records and records[0].timestamp_ms < oldest_kept_ms:
            self._drop_oldest(log)
            stats.evicted_by_ttl += 1
        while len(records) > log.retention.size:
            self._drop_oldest(log)
            stats.evicted_by_size += 1

    def _drop_oldest(self, log: _ChannelLog) -> None:
        freed = _record_bytes(log.records.popleft())
        log.size_bytes -= freed
        self.stats.retained_bytes -= freed

    def _enforce_cap(self, keep: _ChannelLog) -> None:
        stats = self.stats
        # ``keep`` was just moved to the most recently used end, so it is never the victim.
        while stats.retained_bytes > self._max_bytes and len(self._logs) > 1:
            _, victim = self._logs.popitem(last=False)
            stats.retained_bytes -= victim.size_bytes
            stats.evicted_by_cap += len(victim.records)
            stats.channels_evicted += 1
        # One channel alone over the cap keeps its newest record at least.
        while stats.retained_bytes > self._max_bytes and len(keep.records) > 1:
            self._drop_oldest(keep)
            stats.evicted_by_cap += 1

    def append(self, publication: Publication, retention: Retention) -> StreamPosition:
        """Give the publication the channel's next offset and keep it."""
        now = self._clock()
        log = self._log(publication.app_id, publication.channel, retention)
        log.offset += 1
        record = HistoryRecord(
            log.offset,
            int(now * 1000),
            publication.sender,
            publication.data,
            publication.sender_metadata,
        )
        log.records.append(record)
        size = _record_bytes(record)
        log.size_bytes += size
        self.stats.retained_bytes += size
        self.stats.appended += 1
        self._trim(log, record.timestamp_ms)
        self._enforce_cap(log)
        return StreamPosition(log.offset, log.epoch)

    async def read(
        self,
        app_id: str,
        channel: str,
        retention: Retention,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        log = self._log(app_id, channel, retention)
        self._trim(log, int(self._clock() * 1000))
        self._enforce_cap(log)
        records = log.records
        position = StreamPosition(log.offset, log.epoch)
        if after is None:
            count = min(limit or 0, len(records))
            return HistoryPage(position, tuple(islice(records, len(records) - count, None)), True)
        if after >= log.offset:
            # Nothing newer; an offset beyond the channel's means the client is confused.
            return HistoryPage(position, (), after == log.offset)
        first = records[0].offset if records else log.offset + 1
        start = max(0, after + 1 - first)
        stop = len(records) if limit is None else min(len(records), start + limit)
        chosen = tuple(islice(records, start, stop))
        return HistoryPage(position, chosen, first <= after + 1)

    def sweep(self, budget: int = 2000) -> None:
        """Trim expired records of up to ``budget`` least recently used channels (a periodic
        task calls this, so idle channels free their memory without being touched)."""
        now_ms = int(self._clock() * 1000)
        for log in list(islice(self._logs.values(), budget)):
            self._trim(log, now_ms)
        self._expire_claims(self._clock())

    # --- de-duplication ---------------------------------------------------------------------

    def _expire_claims(self, now: float) -> None:
        claims = self._claims
        while claims:
            key, claim = next(iter(claims.items()))
            if claim.expires_at > now:
                break
            del claims[key]

    def first_claim(
        self, app_id: str, channel: str, message_id: str
    ) -> tuple[bool, StreamPosition | None]:
        """Whether the id was already claimed within its window, and the first's position."""
        self._expire_claims(self._clock())
        claim = self._claims.get((app_id, channel, message_id))
        if claim is None:
            return False, None
        self.stats.duplicates += 1
        return True, claim.position

    def claim(
        self,
        app_id: str,
        channel: str,
        message_id: str,
        window_s: float,
        position: StreamPosition | None,
    ) -> None:
        self._claims[(app_id, channel, message_id)] = _Claim(self._clock() + window_s, position)
        while len(self._claims) > self._max_ids:
            self._claims.popitem(last=False)
            self.stats.dedup_ids_evicted += 1
