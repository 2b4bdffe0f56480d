"""Single-process backends: the default, and the reference the conformance suite holds Redis to.

Nothing here awaits anything, so each call completes atomically on the event loop; the node's
ordering guarantees therefore hold without further coordination. The presence store decides
the channel lifecycle events (occupied, vacated, member added and removed) in the same step
that changes the membership, and tells its :class:`~hubbub.core.events.EventSink`. History and
message ids live in a :class:`~hubbub.brokers.memory_history.MemoryHistoryStore`, which a small
task sweeps for expired records while the broker runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import defaultdict
from typing import Final

from hubbub.brokers.memory_history import MemoryHistoryStore
from hubbub.core.broker import Broker, BrokerHandler, Direct, NodeAnswer, NodeQuery, Publication
from hubbub.core.events import NO_EVENTS, ChannelEvent, ChannelEventName, EventSink
from hubbub.core.history import Published, Recording
from hubbub.core.presence import PresenceDelta, PresenceEntry, PresenceStore
from hubbub.core.usage import AppQuota, UsageSnapshot, UsageStore

SWEEP_INTERVAL_S: Final = 5.0


class MemoryBroker(Broker):
    def __init__(self, history: MemoryHistoryStore | None = None) -> None:
        self._handler: BrokerHandler | None = None
        self.history = history if history is not None else MemoryHistoryStore()
        self._sweeper: asyncio.Task[None] | None = None

    def _target(self) -> BrokerHandler:
        if self._handler is None:
            raise RuntimeError("broker not started")
        return self._handler

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._handler = None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.history.sweep()

    # With one node there is no remote interest to register.
    async def watch_channel(self, app_id: str, channel: str) -> None:
        return None

    async def unwatch_channel(self, app_id: str, channel: str) -> None:
        return None

    async def watch_pattern(self, app_id: str, pattern: str) -> None:
        return None

    async def unwatch_pattern(self, app_id: str, pattern: str) -> None:
        return None

    async def register_peer(self, app_id: str, peer_id: str) -> None:
        return None

    async def unregister_peer(self, app_id: str, peer_id: str) -> None:
        return None

    async def publish(self, publication: Publication, *, count_everywhere: bool = False) -> int:
        # One process: this node is everywhere.
        return self._target().deliver_publication(publication)

    async def publish_recorded(
        self, publication: Publication, recording: Recording, *, count_everywhere: bool = False
    ) -> Published:
        history, handler = self.history, self._target()
        app_id, channel, message_id = publication.app_id, publication.channel, recording.message_id
        if message_id is not None:
            seen, first = history.first_claim(app_id, channel, message_id)
            if seen:
                return Published(0, first, duplicate=True)
        position = None
        if recording.retention is not None:
            position = history.append(publication, recording.retention)
            publication = dataclasses.replace(publication, position=position)
        if message_id is not None:
            history.claim(app_id, channel, message_id, recording.dedup_window_s, position)
        return Published(handler.deliver_publication(publication), position)

    async def publish_presence(self, delta: PresenceDelta) -> None:
        self._target().deliver_presence(delta)

    async def send_direct(self, direct: Direct) -> int:
        return self._target().deliver_direct(direct)

    async def disconnect_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int:
        return self._target().disconnect_local_peer(app_id, peer_id, code, reason)

    async def query_nodes(self, query: NodeQuery) -> list[NodeAnswer]:
        return [self._target().answer_query(query)]


class MemoryPresenceStore(PresenceStore):
    def __init__(self, events: EventSink = NO_EVENTS) -> None:
        # (app, channel) -> peer -> (entry, connection ids); dicts keep join order.
        self._channels: dict[tuple[str, str], dict[str, tuple[PresenceEntry, set[str]]]] = {}
        self._events = events

    async def add(self, app_id: str, channel: str, entry: PresenceEntry, connection_id: str) -> int:
        peers = self._channels.get((app_id, channel))
        if peers is None:
            peers = self._channels[(app_id, channel)] = {}
            self._events.emit(ChannelEvent(ChannelEventName.CHANNEL_OCCUPIED, app_id, channel))
        found = peers.get(entry.peer_id)
        if found is None:
            peers[entry.peer_id] = (entry, {connection_id})
            self._events.emit(
                ChannelEvent(ChannelEventName.MEMBER_ADDED, app_id, channel, entry.peer_id)
            )
            return 0
        before = len(found[1])
        found[1].add(connection_id)
        # The newest connection's metadata describes the peer from now on.
        peers[entry.peer_id] = (entry, found[1])
        return before

    async def remove(self, app_id: str, channel: str, peer_id: str, connection_id: str) -> int:
        key = (app_id, channel)
        peers = self._channels.get(key)
        if peers is None or peer_id not in peers:
            return 0
        connections = peers[peer_id][1]
        connections.discard(connection_id)
        if connections:
            return len(connections)
        del peers[peer_id]
        self._events.emit(ChannelEvent(ChannelEventName.MEMBER_REMOVED, app_id, channel, peer_id))
        if not peers:
            del self._channels[key]
            self._events.emit(ChannelEvent(ChannelEventName.CHANNEL_VACATED, app_id, channel))
        return 0

    async def members(self, app_id: str, channel: str) -> list[PresenceEntry]:
        peers = self._channels.get((app_id, channel), {})
        return [entry for entry, _ in peers.values()]

    async def count(self, app_id: str, channel: str) -> int:
        return len(self._channels.get((app_id, channel), ()))


class MemoryUsageStore(UsageStore):
    def __init__(self) -> None:
        self._concurrent: dict[str, int] = defaultdict(int)
        self._peak: dict[str, int] = defaultdict(int)
        # app -> (period start, messages counted in it)
        self._messages: dict[str, tuple[int, int]] = {}

    async def open_connection(self, app_id: str, quota: AppQuota) -> bool:
        cap = quota.max_concurrent_connections
        if cap is not None and self._concurrent[app_id] >= cap:
            return False
        self._concurrent[app_id] += 1
        self._peak[app_id] = max(self._peak[app_id], self._concurrent[app_id])
        return True

    async def close_connection(self, app_id: str) -> None:
        self._concurrent[app_id] = max(0, self._concurrent[app_id] - 1)

    def _used(self, app_id: str, quota: AppQuota, now: float) -> tuple[int, int]:
        start, _ = quota.period_bounds(now)
        period, used = self._messages.get(app_id, (start, 0))
        return (start, 0) if period != start else (period, used)

    async def count_message(self, app_id: str, quota: AppQuota, now: float) -> bool:
        start, used = self._used(app_id, quota, now)
        self._messages[app_id] = (start, used + 1)
        cap = quota.max_messages_per_period
        return cap is None or used < cap

    async def snapshot(self, app_id: str, quota: AppQuota, now: float) -> UsageSnapshot:
        start, used = self._used(app_id, quota, now)
        return UsageSnapshot(
            concurrent_now=self._concurrent[app_id],
            peak_concurrent=self._peak[app_id],
            messages_used=used,
            period_start=start,
            period_end=start + quota.period_s,
        )
