"""Lifecycle events of a cluster: decided once in Redis, sent by one node per channel, in order.

The presence scripts (``redis_stores``) decide ``channel_occupied``, ``channel_vacated``,
``member_added`` and ``member_removed`` atomically, so each is decided exactly once however
many nodes race, and number them per channel (``seq``). Deciding is not sending, though: the
node that decided a channel's ``channel_occupied`` and the node that decides its
``channel_vacated`` a moment later are often different nodes, each with its own webhook queue,
and two queues that retry independently deliver in any order. So every channel has one
**sending node**, recorded in Redis beside the channel's presence by the same scripts: the
node that decides a channel's first event becomes its sender, and every script answer names
the sender, so all nodes agree without any view of the cluster. The deciding node hands each
event to the sender (one PUBLISH on the sender's reply channel), and the sender's
:class:`ChannelOrderer` releases the channel's events to the webhook queue in ``seq`` order,
which undoes the races between hand-overs from different nodes. The record outlives the
channel's vacancy (an hour after its last event), so the next occupation is sent by the same
node, behind whatever that node still has queued.

The hand-over is exactly-once while the sending node lives: PUBLISH answers how many
subscribers got it. A hand-over that reached nobody (the sender died or stopped) makes the
decider claim the channel (a compare-and-set in Redis: whoever claims first becomes the
sender) and hand the event to the winner, itself included; the events a dead sender still had
queued are lost with it. An event whose predecessor never arrives (its decider died between
the script and the hand-over) is released after ``hold_s``.

``client_event`` (one per publish) is not routed: the publishing node sends it, in the order
of its own publishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from hubbub.core.events import ChannelEvent, ChannelEventName, EventSink

log = logging.getLogger(__name__)

HOLD_S: Final = 1.0
# A channel this node has not sent for yet: how long its first events wait for earlier ones
# that may still be on their way from other nodes.
SETTLE_S: Final = 0.2
MAX_TRACKED_CHANNELS: Final = 50_000

# Hands an event to a node; resolves to how many subscribers received it.
Forward = Callable[[str, ChannelEvent], "asyncio.Future[Any]"]
# Takes a channel over from a sender that did not hear (app, channel, that sender); resolves
# to the channel's sender after the claim (this node, or whoever claimed first).
Claim = Callable[[str, str, str], Awaitable[str]]


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
    """Where the presence store's decisions go on a cluster (see the module docstring)."""

    def __init__(self, node_id: str, local: EventSink, hold_s: float = HOLD_S) -> None:
        self._node_id = node_id
        self._local = local
        self._orderer = ChannelOrderer(local, hold_s)
        self._forward: Forward | None = None
        self._claim: Claim | None = None
        self._claims: set[asyncio.Task[None]] = set()
        self.handed_over = 0
        self.claimed = 0

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def orderer(self) -> ChannelOrderer:
        return self._orderer

    def attach(self, forward: Forward, claim: Claim) -> None:
        """How to reach another node (the broker), and how to take a channel over (the
        presence store)."""
        self._forward = forward
        self._claim = claim

    # --- EventSink (what the store asks, and events that need no routing) -------------------

    def wants(self, app_id: str, name: ChannelEventName) -> bool:
        return self._local.wants(app_id, name)

    def emit(self, event: ChannelEvent) -> None:
        self._local.emit(event)

    # --- routing ------------------------------------------------------------------------------

    def decided(self, event: ChannelEvent, sender: str) -> None:
        """A script decided ``event``; ``sender`` sends the channel's events."""
        if sender == self._node_id or self._forward is None:
            self._orderer.accept(event)
            return
        self._hand_over(event, sender, claim_if_unheard=True)

    def _hand_over(self, event: ChannelEvent, sender: str, *, claim_if_unheard: bool) -> None:
        assert self._forward is not None
        try:
            handed = self._forward(sender, event)
        except Exception:
            log.exception("could not hand a channel event to node %s", sender)
            self._orderer.accept(event)
            return

        def done(answer: asyncio.Future[Any]) -> None:
            heard = not answer.cancelled() and answer.exception() is None and bool(answer.result())
            if heard:
                self.handed_over += 1
            elif claim_if_unheard and self._claim is not None:
                task = asyncio.get_running_loop().create_task(self._take_over(event, sender))
                self._claims.add(task)
                task.add_done_callback(self._claims.discard)
            else:
                self._orderer.accept(event)  # sent once, here, rather than not at all

        handed.add_done_callback(done)

    async def _take_over(self, event: ChannelEvent, unheard: str) -> None:
        """The sender did not hear: claim the channel, then hand the event to the winner."""
        assert self._claim is not None
        try:
            sender = await self._claim(event.app_id, event.channel, unheard)
        except Exception:
            log.warning("could not claim channel %r; sending its event here", event.channel)
            sender = self._node_id
        self.claimed += 1
        if sender == self._node_id:
            self._orderer.accept(event)
        else:
            self._hand_over(event, sender, claim_if_unheard=False)

    def receive(self, event: ChannelEvent) -> None:
        """An event another node decided for a channel this node sends."""
        self._orderer.accept(event)
