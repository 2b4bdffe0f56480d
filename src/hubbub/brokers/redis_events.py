"""Lifecycle events of a cluster: decided once in Redis, sent by one node per channel, in order.

The presence scripts (``redis_stores``) decide ``channel_occupied``, ``channel_vacated``,
``member_added`` and ``member_removed`` atomically, so each is decided exactly once however
many nodes race, and number them per channel (``seq``). Deciding is not sending, though: the
node that decided a channel's ``channel_occupied`` and the node that decides its
``channel_vacated`` a moment later are often different nodes, each with its own webhook queue,
and two queues that retry independently deliver in any order. So every channel has one
**sending node**, chosen by rendezvous hashing of the channel over the live nodes; the
deciding node hands the event to it (one PUBLISH on the sender's reply channel), and the
sender's :class:`ChannelOrderer` releases the channel's events to the webhook queue in
``seq`` order. An event whose predecessor never comes (its decider died between the script and
the hand-over) is released after ``hold_s``.

The hand-over is exactly-once as long as the sending node lives: PUBLISH answers how many
subscribers got it, and a decider whose hand-over reached nobody (the chosen node just died,
or Redis is away) sends the event itself. While nodes join or leave, two nodes may briefly
disagree on a channel's sending node; events are then still sent once each, but events of one
channel decided during that window may be sent by two nodes, so their order is not guaranteed.

``client_event`` (one per publish) is not routed: the publishing node sends it, in the order
of its own publishes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from hubbub.brokers.redis_link import RedisLink
from hubbub.core.events import ChannelEvent, ChannelEventName, EventSink

log = logging.getLogger(__name__)

HOLD_S: Final = 1.0
# A channel this node has not sent for yet: how long its first events wait for earlier ones
# that may still be on their way from other nodes.
SETTLE_S: Final = 0.2
MAX_TRACKED_CHANNELS: Final = 50_000

# Hands an encoded event to a node; resolves to how many subscribers received it.
Forward = Callable[[str, ChannelEvent], "asyncio.Future[Any]"]


async def read_live_nodes(home: RedisLink, prefix: str) -> list[str]:
    """The nodes whose heartbeat key (``<prefix>:node:<id>:alive``) is current."""
    client = home.client

    async def read() -> list[str]:
        members = await client.smembers(f"{prefix}:nodes")
        nodes = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        pipe = client.pipeline(transaction=False)
        for node_id in nodes:
            pipe.exists(f"{prefix}:node:{node_id}:alive")
        alive = await pipe.execute()
        return [node_id for node_id, up in zip(nodes, alive, strict=True) if up]

    found: list[str] = await home.run(read())
    return found


def sending_node(app_id: str, channel: str, nodes: Iterable[str]) -> str:
    """Rendezvous hashing: every node that sees the same live set picks the same sender, and
    a node leaving moves only its own channels."""

    def weight(node_id: str) -> bytes:
        key = f"{node_id}\x00{app_id}\x00{channel}".encode("utf-8", "surrogatepass")
        return hashlib.blake2b(key, digest_size=8).digest()

    return max(nodes, key=weight)


@dataclass(slots=True)
class _Stream:
    next_seq: int | None  # None: not known yet (settling)
    held: dict[int, ChannelEvent] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class ChannelOrderer:
    """Releases each channel's numbered events to ``sink`` in ``seq`` order.

    A channel's numbers are contiguous (the scripts count every event they decide), so a
    missing number means an event still on its way: later ones wait for it, at most
    ``hold_s``. Number 1 starts a channel's count (its counter is new, or Redis lost it). For a
    channel first seen at a higher number (this node just became its sender, or just started)
    the next number is not known: its first events wait ``settle_s`` and then go in order
    from the lowest. The record of each channel stays after it is vacated, so its next
    occupation is ordered too; past ``MAX_TRACKED_CHANNELS`` the least recently used records
    are forgotten.
    """

    def __init__(self, sink: EventSink, hold_s: float = HOLD_S, settle_s: float = SETTLE_S) -> None:
        self._sink = sink
        self._hold_s = hold_s
        self._settle_s = settle_s
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.released_late = 0  # events that arrived after a later one had been sent
        self.gaps_skipped = 0

    @property
    def tracked_channels(self) -> int:
        return len(self._streams)

    def accept(self, event: ChannelEvent) -> None:
        seq = event.seq
        if seq is None:
            self._sink.emit(event)
            return
        key = (event.app_id, event.channel)
        stream = self._streams.pop(key, None)
        if stream is None:
            stream = _Stream(1 if seq == 1 else None)
        elif seq == 1:
            # A count starts: what is held (numbers that came before their predecessors)
            # stays held and follows in order.
            stream.next_seq = 1
        self._streams[key] = stream  # most recently used last
        if len(self._streams) > MAX_TRACKED_CHANNELS:
            self._forget_idle()
        if stream.next_seq is not None and seq < stream.next_seq:
            self.released_late += 1
            self._sink.emit(event)
            return
        stream.held[seq] = event
        if stream.next_seq is None:
            if stream.timer is None:
                stream.timer = self._later(self._settle_s, key)
            return
        self._release(stream)
        if stream.held and stream.timer is None:
            stream.timer = self._later(self._hold_s, key)

    def _later(self, delay_s: float, key: tuple[str, str]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay_s, self._skip_gap, key)

    def _release(self, stream: _Stream) -> None:
        assert stream.next_seq is not None
        while stream.next_seq in stream.held:
            event = stream.held.pop(stream.next_seq)
            stream.next_seq += 1
            self._sink.emit(event)
        if not stream.held and stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None

    def _skip_gap(self, key: tuple[str, str]) -> None:
        """The wait is over: go on from the lowest number that did arrive."""
        stream = self._streams.get(key)
        if stream is None:
            return
        stream.timer = None
        if not stream.held:
            return
        if stream.next_seq is not None:
            self.gaps_skipped += 1
        stream.next_seq = min(stream.held)
        self._release(stream)
        if stream.held:
            stream.timer = self._later(self._hold_s, key)

    def _forget_idle(self) -> None:
        for key in list(self._streams)[: MAX_TRACKED_CHANNELS // 10]:
            if not self._streams[key].held:
                del self._streams[key]


class RedisEventRouter:
    """The presence store's event sink on a cluster (see the module docstring)."""

    def __init__(self, node_id: str, local: EventSink, hold_s: float = HOLD_S) -> None:
        self._node_id = node_id
        self._local = local
        self._orderer = ChannelOrderer(local, hold_s)
        self._live: frozenset[str] = frozenset({node_id})
        self._forward: Forward | None = None
        self.handed_over = 0
        self.sent_locally_instead = 0

    @property
    def orderer(self) -> ChannelOrderer:
        return self._orderer

    def attach(self, forward: Forward) -> None:
        """The broker's way of reaching another node (its reply channel)."""
        self._forward = forward

    def set_live_nodes(self, nodes: Iterable[str]) -> None:
        self._live = frozenset({*nodes, self._node_id})

    def forget_nodes(self, nodes: Iterable[str]) -> None:
        self._live = self._live - set(nodes) | {self._node_id}

    @property
    def live_nodes(self) -> frozenset[str]:
        return self._live

    # --- EventSink --------------------------------------------------------------------------

    def wants(self, app_id: str, name: ChannelEventName) -> bool:
        return self._local.wants(app_id, name)

    def emit(self, event: ChannelEvent) -> None:
        if event.seq is None:
            self._local.emit(event)
            return
        sender = sending_node(event.app_id, event.channel, self._live)
        if sender == self._node_id or self._forward is None:
            self._orderer.accept(event)
            return
        try:
            handed = self._forward(sender, event)
        except Exception:
            log.exception("could not hand a channel event to node %s", sender)
            self._send_here(event)
            return
        handed.add_done_callback(lambda done: self._handed(done, event))

    def _handed(self, done: asyncio.Future[Any], event: ChannelEvent) -> None:
        receivers = 0
        if not done.cancelled() and done.exception() is None:
            receivers = int(done.result() or 0)
        if receivers:
            self.handed_over += 1
        else:
            self._send_here(event)

    def _send_here(self, event: ChannelEvent) -> None:
        """The sending node is unreachable: sent once, by the node that decided it."""
        self.sent_locally_instead += 1
        self._orderer.accept(event)

    def receive(self, event: ChannelEvent) -> None:
        """An event another node decided for a channel this node sends."""
        self._orderer.accept(event)
