"""Channel history and publish de-duplication (spec 16.1, 16.2): the role and its contract.

A channel whose name matches an ``[[apps.channels]]`` entry with ``history_size > 0`` keeps its
recent publications. Each of them gets an **offset** (1, 2, 3, ... per channel), and the
channel's history has an **epoch**: an opaque random string made together with the history and
replaced whenever that history is lost (the single node restarted, Redis was flushed, the
memory cap evicted the channel). ``(offset, epoch)`` names one publication for good: a client
that remembers it can later ask for everything after it.

Two parts of the backend share the work, because appending and delivering must be one step:

* :meth:`hubbub.core.broker.Broker.publish_recorded` appends and delivers. Its contract:

  - With a retention it assigns the channel's next offset, appends the publication and
    delivers it (``Publication.position`` set) as **one atomic step**: two nodes publishing at
    once never get the same offset or leave one out, and every node's handler receives the
    channel's recorded publications in offset order. The append is trimmed to the retention's
    ``size`` newest publications, none older than its ``ttl_s``.
  - With a ``message_id`` it first claims the id for ``(app, channel)`` for
    ``dedup_window_s``, on every node: a second publish with the same id in that window is not
    appended or delivered; it returns ``duplicate=True`` and (with history) the first one's
    position.
  - Without retention and message id, nodes use plain ``Broker.publish``.

* :class:`HistoryStore` reads what was appended, for ``subscribe.since``/``rewind`` and REST.
  Reading a channel with history that has none yet creates its epoch, so a client that
  subscribed to an empty channel can recover from offset 0 of that epoch.

Memory is bounded in every implementation: per channel by the retention, and in total by a cap
the implementation documents (eviction is counted, see ``HistoryStats``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from hubbub.protocol.patterns import ChannelPattern

DEFAULT_DEDUP_WINDOW_S: Final = 120.0
# How many concrete channels' retention lookups are remembered before the cache starts over.
RETENTION_CACHE_MAX: Final = 10_000


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of a channel's history is kept: at most ``size`` publications, none older
    than ``ttl_s`` seconds."""

    size: int
    ttl_s: float


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A channel's offset (the newest publication's, 0 before the first) in an epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Recording:
    """What a publish asks of the history role: keep it (``retention``) and/or de-duplicate
    it (``message_id`` within ``dedup_window_s``)."""

    retention: Retention | None
    message_id: str | None
    dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S


@dataclass(frozen=True, slots=True)
class Published:
    """The outcome of a recorded publish."""

    reached: int  # connections reached (as ``Broker.publish`` counts them); 0 for a duplicate
    position: StreamPosition | None  # with history: the publication's offset and epoch
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    offset: int
    timestamp_ms: int  # Unix milliseconds, from the publishing node's clock
    sender: str
    data: bytes  # raw JSON
    sender_metadata: bytes | None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Records read from a channel, oldest first, and the channel's position when read.

    ``complete``: every publication after the requested offset, up to ``position.offset``,
    is still retained (for ``since`` in the same epoch: nothing was missed)."""

    position: StreamPosition
    records: tuple[HistoryRecord, ...]
    complete: bool


@dataclass(slots=True)
class HistoryStats:
    """Counters an implementation keeps (exported at /metrics)."""

    appended: int = 0
    duplicates: int = 0
    evicted_by_size: int = 0  # publications dropped for the channel's history_size
    evicted_by_ttl: int = 0  # publications dropped for the channel's history_ttl_s
    evicted_by_cap: int = 0  # publications dropped by the store's global memory cap
    channels_evicted: int = 0  # channels whose history (and epoch) the cap dropped
    dedup_ids_evicted: int = 0  # message ids forgotten early by the dedup map's bound
    retained_bytes: int = 0  # gauge: what the store holds now (memory store only)


class HistoryStore(ABC):
    stats: HistoryStats  # kept up to date by the implementation (and its broker)

    @abstractmethod
    async def read(
        self,
        app_id: str,
        channel: str,
        retention: Retention,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        """Retained records of a channel, oldest first.

        ``after=N``: records with offset > N (the first ``limit`` of them, when given), and
        ``complete`` tells whether offset N + 1 (or nothing at all) was missed. ``after=None``:
        the newest ``limit`` records (none when ``limit`` is None or 0). Creates the channel's
        epoch when it has none. Raises ``BrokerUnavailable`` when the store is unreachable.
        """


@dataclass(frozen=True, slots=True)
class RetentionRule:
    pattern: ChannelPattern
    retention: Retention


@dataclass(slots=True)
class RetentionRules:
    """``[[apps.channels]]``: per app, patterns in file order; the first match wins.

    A match with ``history_size = 0`` means "no history" (and stops the search), so a
    specific entry can carve an exception out of a broader one below it."""

    by_app: Mapping[str, Sequence[RetentionRule]] = field(default_factory=dict)
    _cache: dict[tuple[str, str], Retention | None] = field(default_factory=dict)

    def for_channel(self, app_id: str, channel: str) -> Retention | None:
        rules = self.by_app.get(app_id)
        if not rules:
            return None
        key = (app_id, channel)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found: Retention | None = None
        for rule in rules:
            if rule.pattern.matches(channel):
                found = rule.retention if rule.retention.size > 0 else None
                break
        if len(self._cache) >= RETENTION_CACHE_MAX:
            self._cache.clear()
        self._cache[key] = found
        return found
