"""Presence under interleavings: random programs of subscribe / unsubscribe / close / reconnect
across several connections and peers (two connections per peer for some), run either one
operation at a time or concurrently over a presence store that yields to the event loop inside
every call. Each connection's own operations stay sequential, as the transport runs them.

Invariants checked on what every connection received:

* after a subscribe's ``ack``, the first presence frame for that channel is the snapshot
  (queued with ``push_after_pause``), and nothing for the channel comes between unsubscribing
  and the next subscribe;
* a member's view, rebuilt from its last snapshot plus the deltas after it (``left`` applied
  before ``joined``), equals the true membership minus its own peer at the end;
* the presence store lists exactly the peers that still have a subscribed connection;
* a connection without the ``presence`` action never receives presence frames.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.brokers.memory import MemoryPresenceStore
from hubbub.core.broker import PresenceEntry
from tests.core.fakes import ALL_ACTIONS, Client, Hub

CHANNELS = ("x", "y")
# Slot -> peer; slots 0/1 and 2/3 are two connections of one peer (multi-tab, decision 5).
SLOT_PEERS = ("A", "A", "B", "B", "C", "D")
NO_PRESENCE_SLOT = 5
OPERATIONS = (
    *(f"subscribe {c}" for c in CHANNELS),
    *(f"unsubscribe {c}" for c in CHANNELS),
    "close",
    "reconnect",
)

programs = st.lists(
    st.tuples(st.integers(0, len(SLOT_PEERS) - 1), st.sampled_from(OPERATIONS)),
    min_size=1,
    max_size=40,
)


class YieldingPresenceStore(MemoryPresenceStore):
    """Each call gives the loop away a random number of times before acting atomically, like a
    remote store whose operations take time (the delta is published right after, in order)."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng

    async def _pause(self) -> None:
        for _ in range(self._rng.randrange(4)):
            await asyncio.sleep(0)

    async def add(self, app_id: str, channel: str, entry: PresenceEntry, connection_id: str) -> int:
        await self._pause()
        return await super().add(app_id, channel, entry, connection_id)

    async def remove(self, app_id: str, channel: str, peer_id: str, connection_id: str) -> int:
        await self._pause()
        return await super().remove(app_id, channel, peer_id, connection_id)

    async def members(self, app_id: str, channel: str) -> list[PresenceEntry]:
        await self._pause()
        return await super().members(app_id, channel)


@dataclass
class Slot:
    peer: str
    client: Client | None = None
    subscribed: set[str] = field(default_factory=set)
    history: list[Client] = field(default_factory=list)


async def _open(hub: Hub, slot_index: int, slot: Slot) -> None:
    actions = ALL_ACTIONS - {"presence"} if slot_index == NO_PRESENCE_SLOT else ALL_ACTIONS
    slot.client = await hub.connect(slot.peer, actions=actions)
    slot.subscribed = set()
    slot.history.append(slot.client)


async def _apply(hub: Hub, slot_index: int, slot: Slot, operation: str, serial: int) -> None:
    if operation == "reconnect":
        if slot.client is None:
            await _open(hub, slot_index, slot)
        return
    client = slot.client
    if client is None:
        return
    if operation == "close":
        await client.close()
        slot.client = None
        slot.subscribed = set()
        return
    verb, channel = operation.split()
    if verb == "subscribe":
        await client.subscribe(channel, f"subscribe:{channel}:{serial}")
        slot.subscribed.add(channel)
    else:
        await client.unsubscribe(channel, f"unsubscribe:{channel}:{serial}")
        slot.subscribed.discard(channel)


def _check_client(client: Client, own_peer: str, sees_presence: bool) -> dict[str, set[str]]:
    """Replay what one connection received; return its view of each channel it is in."""
    views: dict[str, set[str]] = {}
    awaiting_snapshot: set[str] = set()
    for event in client.sink.events:
        frame = event.frame
        if frame is None:
            continue
        if frame["type"] == "ack":
            verb, channel, _ = frame["requestId"].split(":")
            if verb == "subscribe":
                awaiting_snapshot.add(channel)
            else:
                awaiting_snapshot.discard(channel)
                views.pop(channel, None)
        elif frame["type"] == "presence":
            assert sees_presence, frame
            channel = frame["channel"]
            if channel in awaiting_snapshot:
                assert event.kind == "pause", f"first presence after subscribe is a delta: {frame}"
                assert frame["left"] == []
                awaiting_snapshot.discard(channel)
                views[channel] = {entry["peerId"] for entry in frame["joined"]}
            else:
                assert event.kind == "push", f"snapshot without a subscribe: {frame}"
                assert channel in views, f"presence while not subscribed: {frame}"
                views[channel] -= {entry["peerId"] for entry in frame["left"]}
                views[channel] |= {entry["peerId"] for entry in frame["joined"]}
            assert own_peer not in views[channel], f"own peer listed: {frame}"
    assert not awaiting_snapshot or not sees_presence, "a subscribe got no snapshot"
    return views


async def _run(program: list[tuple[int, str]], rng: random.Random | None) -> None:
    hub = Hub() if rng is None else Hub(presence=YieldingPresenceStore(rng))
    await hub.start()
    slots = [Slot(peer) for peer in SLOT_PEERS]
    for index, slot in enumerate(slots):
        await _open(hub, index, slot)
    if rng is None:
        for serial, (index, operation) in enumerate(program):
            await _apply(hub, index, slots[index], operation, serial)
    else:

        async def run_slot(index: int) -> None:
            for serial, (target, operation) in enumerate(program):
                if target == index:
                    await _apply(hub, index, slots[index], operation, serial)

        await asyncio.wait_for(
            asyncio.gather(*(run_slot(i) for i in range(len(slots)))), timeout=10
        )

    truth = {
        channel: {s.peer for s in slots if s.client is not None and channel in s.subscribed}
        for channel in CHANNELS
    }
    for channel in CHANNELS:
        members = await hub.node.channel_members("app", channel)
        assert sorted(m.peer_id for m in members) == sorted(truth[channel])

    for index, slot in enumerate(slots):
        sees_presence = index != NO_PRESENCE_SLOT
        for client in slot.history:
            views = _check_client(client, slot.peer, sees_presence)
            if client is slot.client and sees_presence:
                assert set(views) == slot.subscribed
                for channel, view in views.items():
                    assert view == truth[channel] - {slot.peer}, (channel, view, truth)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs)
async def test_presence_invariants_one_operation_at_a_time(program: list[tuple[int, str]]) -> None:
    await _run(program, None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs, rng=st.randoms(use_true_random=False))
async def test_presence_invariants_with_concurrent_connections(
    program: list[tuple[int, str]], rng: random.Random
) -> None:
    await _run(program, rng)


async def test_a_delta_during_a_slow_snapshot_is_held_behind_it() -> None:
    """The race the held-back queue exists for, written out once by hand."""
    gate = asyncio.Event()

    class GatedStore(MemoryPresenceStore):
        async def members(self, app_id: str, channel: str) -> list[PresenceEntry]:
            await gate.wait()
            return await super().members(app_id, channel)

    hub = await Hub(presence=GatedStore()).start()
    newcomer = await hub.connect("new")
    member = await hub.connect("member")
    subscribing = asyncio.create_task(newcomer.subscribe("room", "s:room:0"))
    await _until_subscribed(newcomer, "room")
    # The newcomer is a member already, its snapshot is being read: a join arrives now.
    await asyncio.wait_for(_subscribe_later(member, gate), timeout=5)
    await asyncio.wait_for(subscribing, timeout=5)
    events = newcomer.new_events()
    assert [(e.kind, e.frame) for e in events] == [
        ("push", {"type": "ack", "requestId": "s:room:0"}),
        (
            "pause",
            {"type": "presence", "channel": "room", "joined": [{"peerId": "member"}], "left": []},
        ),
        (
            "push",
            {"type": "presence", "channel": "room", "joined": [{"peerId": "member"}], "left": []},
        ),
    ]


async def _subscribe_later(member: Client, gate: asyncio.Event) -> None:
    task = asyncio.create_task(member.subscribe("room", "m"))
    # member's own snapshot also waits on the gate; its join delta is already delivered.
    await _until_subscribed(member, "room")
    for _ in range(10):
        await asyncio.sleep(0)
    gate.set()
    await task


async def _until_subscribed(client: Client, channel: str) -> None:
    """Let the loop run (bounded) until the node has recorded the subscription."""
    for _ in range(100):
        if channel in client.conn.subscriptions:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{client.peer_id} never subscribed to {channel}")
