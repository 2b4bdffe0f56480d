"""The node with an event sink (webhooks) and an authorizer (proxies), network-free."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from hubbub.brokers.memory import MemoryPresenceStore
from hubbub.core.authorizer import ALLOWED, Verdict
from hubbub.core.broker import AppQuota
from hubbub.core.events import ChannelEvent, ChannelEventName
from hubbub.core.node import NodeLimits
from hubbub.core.principal import Principal
from tests.core.fakes import Client, Hub

ALL_EVENTS = frozenset(ChannelEventName)


@dataclass
class RecordingSink:
    wanted: frozenset[ChannelEventName] = ALL_EVENTS
    events: list[ChannelEvent] = field(default_factory=list)

    def wants(self, app_id: str, name: ChannelEventName) -> bool:
        return name in self.wanted

    def emit(self, event: ChannelEvent) -> None:
        self.events.append(event)

    def take(self) -> list[tuple[str, str, str | None]]:
        taken = [(e.name.value, e.channel, e.user_id) for e in self.events]
        self.events.clear()
        return taken


Decide = Callable[[str, str, bytes | None], "Verdict | asyncio.Future[Verdict]"]


@dataclass
class ScriptedAuthorizer:
    """Covers connections of key ``proxied``; ``decide(kind, channel, data)`` gives verdicts
    (a future stands for a backend that has not answered yet)."""

    decide: Decide = lambda kind, channel, data: ALLOWED
    calls: list[tuple[str, str, bytes | None]] = field(default_factory=list)

    def covers_subscribe(self, principal: Principal) -> bool:
        return principal.key_id == "proxied"

    def covers_publish(self, principal: Principal) -> bool:
        return principal.key_id == "proxied"

    async def _verdict(self, kind: str, channel: str, data: bytes | None) -> Verdict:
        self.calls.append((kind, channel, data))
        verdict = self.decide(kind, channel, data)
        return await verdict if isinstance(verdict, asyncio.Future) else verdict

    async def subscribe(self, principal: Principal, channel: str) -> Verdict:
        return await self._verdict("subscribe", channel, None)

    async def publish(self, principal: Principal, channel: str, data: bytes) -> Verdict:
        return await self._verdict("publish", channel, data)


def hub_with_events(sink: RecordingSink, **kwargs: object) -> Hub:
    return Hub(presence=MemoryPresenceStore(sink), events=sink, **kwargs)  # type: ignore[arg-type]


async def quick(step: Awaitable[None]) -> None:
    """A frame of a proxied connection is queued, not handled: its send returns at once."""
    await asyncio.wait_for(step, 2)


async def settle(client: Client) -> None:
    """Let the connection's lane handle what is queued."""
    lane = client.conn.lane
    for _ in range(100):
        if lane is None or (lane.pending == 0 and lane._current is None):
            return
        await asyncio.sleep(0)
    raise AssertionError("the lane did not settle")


# --- lifecycle events (decided by the presence store) ------------------------------------------


async def test_occupied_vacated_and_members_follow_presence_not_connections() -> None:
    sink = RecordingSink()
    hub = await hub_with_events(sink).start()
    alice = await hub.connect("alice")
    await alice.subscribe("room")
    assert sink.take() == [("channel_occupied", "room", None), ("member_added", "room", "alice")]
    bob = await hub.connect("bob")
    await bob.subscribe("room")
    await bob.subscribe("room")  # a re-subscribe changes nothing
    assert sink.take() == [("member_added", "room", "bob")]
    alice_again = await hub.connect("alice")
    await alice_again.subscribe("room")  # decision 5: left+joined to members, no webhook
    await alice.close()  # alice is still present through her other connection
    assert sink.take() == []
    await alice_again.unsubscribe("room")
    assert sink.take() == [("member_removed", "room", "alice")]
    await bob.close()
    assert sink.take() == [("member_removed", "room", "bob"), ("channel_vacated", "room", None)]
    await alice_again.unsubscribe("room")  # idempotent: nothing more
    assert sink.take() == []


async def test_a_pattern_subscription_occupies_no_channel() -> None:
    sink = RecordingSink()
    hub = await hub_with_events(sink).start()
    watcher = await hub.connect("watcher")
    await watcher.subscribe("rooms/*")
    await watcher.unsubscribe("rooms/*")
    assert sink.take() == []


# --- client_event ------------------------------------------------------------------------------


async def test_client_event_carries_the_publisher_and_the_payload() -> None:
    sink = RecordingSink()
    hub = await hub_with_events(sink).start()
    alice = await hub.connect("alice")
    await alice.publish("room", {"t": 1})
    await alice.publish("_system/x", 1)  # refused: channel_reserved
    (published,) = sink.events
    assert (published.name, published.channel, published.user_id) == (
        ChannelEventName.CLIENT_EVENT,
        "room",
        "alice",
    )
    assert json.loads(published.data or b"") == {"t": 1}


async def test_no_client_event_for_a_refused_or_unwanted_publish() -> None:
    sink = RecordingSink()
    hub = await hub_with_events(sink, quotas={"app": AppQuota(max_messages_per_period=1)}).start()
    alice = await hub.connect("alice", patterns=("room",))
    await alice.publish("elsewhere")  # channel_not_authorized
    await alice.publish("room")
    await alice.publish("room")  # over_message_quota
    assert [e.name for e in sink.events] == [ChannelEventName.CLIENT_EVENT]
    quiet = RecordingSink(wanted=frozenset())
    hub = await hub_with_events(quiet).start()
    bob = await hub.connect("bob")
    await bob.publish("room")
    await bob.subscribe("room")
    assert [e.name for e in quiet.events] == [
        ChannelEventName.CHANNEL_OCCUPIED,
        ChannelEventName.MEMBER_ADDED,
    ]  # the store emits; a sink that wants none drops them (client events are never built)


# --- the authorizer ----------------------------------------------------------------------------


async def test_a_subscribe_refused_with_the_backends_code() -> None:
    sink = RecordingSink()
    authorizer = ScriptedAuthorizer(lambda kind, channel, data: Verdict(code="not_your_room"))
    hub = await hub_with_events(sink, authorizer=authorizer).start()
    alice = await hub.connect("alice", key_id="proxied")
    await alice.subscribe("room", "s1")
    await settle(alice)
    assert alice.new_frames() == [
        {
            "type": "error",
            "code": "not_your_room",
            "message": "refused by the backend",
            "requestId": "s1",
        }
    ]
    assert alice.conn.subscriptions == {}
    assert await hub.node.channel_members("app", "room") == []
    assert sink.take() == []
    assert hub.node.stats.errors["not_your_room"] == 1


async def test_a_known_code_from_the_backend_keeps_its_message() -> None:
    authorizer = ScriptedAuthorizer(lambda kind, channel, data: Verdict(code="backend_error"))
    hub = await Hub(authorizer=authorizer).start()
    alice = await hub.connect("alice", key_id="proxied")
    await alice.subscribe("room", "s1")
    await settle(alice)
    (frame,) = alice.new_frames()
    assert (frame["code"], frame["message"]) == (
        "backend_error",
        "transient backend error, retry shortly",
    )


async def test_the_backend_is_asked_only_after_the_nodes_own_checks() -> None:
    authorizer = ScriptedAuthorizer()
    hub = await Hub(authorizer=authorizer).start()
    alice = await hub.connect("alice", key_id="proxied", patterns=("room",))
    await alice.subscribe("other", "s1")
    await alice.publish("_internal/x", 1, "p1")
    await settle(alice)
    assert [f["code"] for f in alice.new_frames()] == ["channel_not_authorized", "channel_reserved"]
    assert authorizer.calls == []
    plain = await hub.connect("plain")  # its key names no proxy
    await plain.subscribe("room")
    assert plain.conn.lane is None
    assert authorizer.calls == []


async def test_a_publish_replaced_or_refused_by_the_backend() -> None:
    sink = RecordingSink()

    def decide(kind: str, channel: str, data: bytes | None) -> Verdict:
        if kind == "subscribe":
            return ALLOWED
        if data == b'"bad"':
            return Verdict(code="action_not_permitted")
        return Verdict(data=b'{"clean":' + (data or b"null") + b"}")

    hub = await hub_with_events(sink, authorizer=ScriptedAuthorizer(decide)).start()
    reader = await hub.connect("reader")
    await reader.subscribe("room")
    reader.new_frames()
    sink.take()
    writer = await hub.connect("writer", key_id="proxied")
    await writer.publish("room", "bad", "p1")
    await writer.publish("room", "good", "p2")
    await settle(writer)
    assert writer.new_frames() == [
        {
            "type": "error",
            "code": "action_not_permitted",
            "message": "action not permitted",
            "requestId": "p1",
        },
        {"type": "ack", "requestId": "p2"},
    ]
    assert [f["data"] for f in reader.new_frames()] == [{"clean": "good"}]
    (event,) = sink.events
    assert json.loads(event.data or b"") == {"clean": "good"}
    assert hub.node.stats.publications == 1


async def test_publishes_stay_in_order_while_the_connection_keeps_reading() -> None:
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[Verdict]] = []

    def decide(kind: str, channel: str, data: bytes | None) -> asyncio.Future[Verdict]:
        verdict: asyncio.Future[Verdict] = loop.create_future()
        pending.append(verdict)
        return verdict

    hub = await Hub(authorizer=ScriptedAuthorizer(decide)).start()
    reader = await hub.connect("reader")
    await reader.subscribe("room")
    reader.new_frames()
    slow = await hub.connect("slow", key_id="proxied")
    other = await hub.connect("other")
    for n in range(3):
        await quick(slow.publish("room", n, f"p{n}"))  # returns at once: the frame is queued
    await quick(slow.send({"type": "ping"}))
    assert slow.new_frames() == [{"type": "pong"}]  # answered while a verdict is pending
    await other.publish("room", "meanwhile")  # another connection is not held up
    assert [f["data"] for f in reader.new_frames()] == ["meanwhile"]
    for n in range(3):
        async with asyncio.timeout(2):
            while len(pending) <= n:
                await asyncio.sleep(0)
        assert len(pending) == n + 1  # one verdict at a time
        pending[n].set_result(ALLOWED)
    await settle(slow)
    assert [f["data"] for f in reader.new_frames()] == [0, 1, 2]
    assert [f["requestId"] for f in slow.new_frames()] == ["p0", "p1", "p2"]


async def test_a_full_lane_stops_reading_that_connection() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[Verdict] = loop.create_future()
    authorizer = ScriptedAuthorizer(lambda kind, channel, data: gate)
    hub = await Hub(authorizer=authorizer, limits=NodeLimits(max_pending_frames=2)).start()
    slow = await hub.connect("slow", key_id="proxied")
    await quick(slow.publish("room", 0))  # being decided
    await asyncio.sleep(0)
    await quick(slow.publish("room", 1))
    await quick(slow.publish("room", 2))  # the lane holds two
    blocked = asyncio.ensure_future(slow.publish("room", 3))
    await asyncio.sleep(0)
    assert not blocked.done()
    gate.set_result(ALLOWED)
    async with asyncio.timeout(2):
        await blocked
    await settle(slow)
    assert [call[2] for call in authorizer.calls] == [b"0", b"1", b"2", b"3"]


async def test_closing_while_a_backend_decides_a_subscribe_leaves_nothing_behind() -> None:
    sink = RecordingSink()
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[Verdict] = loop.create_future()
    authorizer = ScriptedAuthorizer(lambda kind, channel, data: gate)
    hub = await hub_with_events(sink, authorizer=authorizer).start()
    alice = await hub.connect("alice", key_id="proxied")
    await quick(alice.subscribe("room", "s1"))
    await quick(alice.publish("room", 1, "p1"))  # queued behind the subscribe: dropped at close
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(alice.close())
    await asyncio.sleep(0)
    assert not closing.done()  # waits for the verdict being awaited
    gate.set_result(ALLOWED)
    async with asyncio.timeout(2):
        await closing
    assert await hub.node.channel_members("app", "room") == []
    assert [call[0] for call in authorizer.calls] == ["subscribe"]
    assert sink.take() == []  # a subscribe allowed after its connection closed is not made
    assert hub.node.connection_count == 0


@pytest.mark.parametrize("frame", ['{"type":"nope"}', "not json"])
async def test_bad_frames_on_a_proxied_connection_are_answered_at_once(frame: str) -> None:
    hub = await Hub(authorizer=ScriptedAuthorizer()).start()
    alice = await hub.connect("alice", key_id="proxied")
    await alice.send(frame)
    (error,) = alice.new_frames()
    assert error["type"] == "error"
