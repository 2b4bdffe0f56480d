"""History, offsets, recovery and idempotent publish at the node (spec 16.1, 16.2), network-free.

The memory broker and history store stand in for any backend; the seam between replay and live
messages under random interleavings (and on Redis) is the subject of
``tests/brokers/test_recovery_property.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hubbub.brokers.memory import MemoryBroker
from hubbub.brokers.memory_history import MemoryHistoryStore
from hubbub.core.broker import BrokerUnavailable
from hubbub.core.history import HistoryPage, Retention
from hubbub.protocol.frames import BAD_MESSAGE_ID, BAD_REWIND, BAD_SINCE, SINCE_AND_REWIND
from tests.core.fakes import Client, Hub
from tests.support.clock import FakeClock

CHANNELS = {"app": [("plain/**", 0, 60.0), ("chat/**", 100, 600.0), ("tiny/*", 3, 600.0)]}
META = b'{"name":"Alice"}'


@pytest.fixture
async def hub() -> Hub:
    return await Hub(channels=CHANNELS).start()


def messages(frames: list[dict[str, Any]]) -> list[Any]:
    return [(f["data"], f.get("offset")) for f in frames if f["type"] == "message"]


async def subscribed(hub: Hub, peer: str, channel: str = "chat/1", **fields: Any) -> Client:
    client = await hub.connect(peer)
    await client.send({"type": "subscribe", "channel": channel, "requestId": "s", **fields})
    client.new_frames()
    return client


async def test_messages_and_acks_carry_offsets_on_channels_with_history(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    await bob.subscribe("chat/1")
    ack, snapshot = bob.new_frames()
    epoch = ack["epoch"]
    assert ack == {"type": "ack", "requestId": "s", "offset": 0, "epoch": epoch}
    assert snapshot["type"] == "presence"
    await alice.publish("chat/1", "hi", "p1")
    await alice.publish("chat/1", "again", "p2")
    assert alice.new_frames() == [
        {"type": "ack", "requestId": "p1", "offset": 1, "epoch": epoch},
        {"type": "ack", "requestId": "p2", "offset": 2, "epoch": epoch},
    ]
    assert bob.new_frames() == [
        {"type": "message", "channel": "chat/1", "from": "alice", "data": "hi", "offset": 1,
         "epoch": epoch},
        {"type": "message", "channel": "chat/1", "from": "alice", "data": "again", "offset": 2,
         "epoch": epoch},
    ]  # fmt: skip


async def test_channels_without_history_keep_the_hosted_frames_byte_for_byte(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    for channel in ("room", "plain/x"):  # no entry, and an entry with history_size = 0
        await bob.subscribe(channel, "s")
        assert bob.new_events()[0].out.payload == b'{"type":"ack","requestId":"s"}'  # type: ignore[union-attr]
        await alice.publish(channel, {"a": 1}, "p")
        assert alice.new_events()[0].out.payload == b'{"type":"ack","requestId":"p"}'  # type: ignore[union-attr]
        payload = bob.new_events()[0].out.payload  # type: ignore[union-attr]
        assert payload == (
            b'{"type":"message","channel":"'
            + channel.encode()
            + b'","from":"alice","data":{"a": 1}}'
        )


async def test_since_replays_what_was_missed_then_goes_live(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await subscribed(hub, "bob")
    for n in range(1, 3):
        await alice.publish("chat/1", n)
    epoch = bob.new_frames()[-1]["epoch"]
    await bob.close()
    for n in range(3, 6):
        await alice.publish("chat/1", n)
    again = await hub.connect("bob")
    since = {"offset": 2, "epoch": epoch}
    await again.send({"type": "subscribe", "channel": "chat/1", "requestId": "r", "since": since})
    events = again.new_events()
    frames = [e.frame for e in events]
    assert frames[0] == {
        "type": "ack", "requestId": "r", "recovered": True, "offset": 5, "epoch": epoch,
    }  # fmt: skip
    assert [e.kind for e in events[:2]] == ["push", "pause"]  # the snapshot after the ack
    assert messages(frames[2:]) == [(3, 3), (4, 4), (5, 5)]  # type: ignore[arg-type]
    await alice.publish("chat/1", 6)
    assert messages(again.new_frames()) == [(6, 6)]


async def test_since_from_another_epoch_is_not_recovered_and_replays_nothing(hub: Hub) -> None:
    alice = await hub.connect("alice")
    await alice.publish("chat/1", 1)
    bob = await hub.connect("bob")
    since = {"offset": 0, "epoch": "not-this-one"}
    await bob.send({"type": "subscribe", "channel": "chat/1", "requestId": "r", "since": since})
    frames = bob.new_frames()
    assert frames[0]["recovered"] is False and frames[0]["offset"] == 1
    assert messages(frames) == []


async def test_since_older_than_the_history_replays_what_is_left_unrecovered(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await subscribed(hub, "bob", "tiny/a")
    await alice.publish("tiny/a", 1)
    epoch = bob.new_frames()[-1]["epoch"]
    for n in range(2, 7):
        await alice.publish("tiny/a", n)
    bob.new_frames()
    since = {"offset": 1, "epoch": epoch}
    await bob.send({"type": "subscribe", "channel": "tiny/a", "requestId": "r", "since": since})
    frames = bob.new_frames()
    assert frames[0]["recovered"] is False
    assert messages(frames) == [(4, 4), (5, 5), (6, 6)]  # history_size = 3


async def test_since_on_the_same_connection_replays_without_duplicating_live_ones(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await subscribed(hub, "bob")
    await alice.publish("chat/1", 1)
    await alice.publish("chat/1", 2)
    epoch = bob.new_frames()[-1]["epoch"]
    since = {"offset": 1, "epoch": epoch}
    await bob.send({"type": "subscribe", "channel": "chat/1", "requestId": "r", "since": since})
    frames = bob.new_frames()
    assert frames[0]["recovered"] is True
    assert messages(frames) == [(2, 2)]
    await alice.publish("chat/1", 3)
    assert messages(bob.new_frames()) == [(3, 3)]


async def test_rewind_delivers_the_newest_publications_oldest_first(hub: Hub) -> None:
    alice = await hub.connect("alice", peer_metadata=META)
    for n in range(1, 6):
        await alice.publish("chat/1", n)
    bob = await hub.connect("bob")
    await bob.send(
        {"type": "subscribe", "channel": "chat/1", "requestId": "r", "rewind": 2,
         "includeSenderMetadata": True}
    )  # fmt: skip
    frames = bob.new_frames()
    assert frames[0] == {"type": "ack", "requestId": "r", "offset": 5, "epoch": frames[0]["epoch"]}
    replay = [f for f in frames if f["type"] == "message"]
    assert [(f["data"], f["offset"], f["fromMetadata"]) for f in replay] == [
        (4, 4, {"name": "Alice"}),
        (5, 5, {"name": "Alice"}),
    ]
    carol = await hub.connect("carol")
    await carol.send({"type": "subscribe", "channel": "chat/1", "requestId": "r", "rewind": 1})
    replayed = [f for f in carol.new_frames() if f["type"] == "message"]
    assert [(f["data"], "fromMetadata" in f) for f in replayed] == [(5, False)]


@pytest.mark.parametrize("channel", ["room", "plain/x", "chat/*"])
@pytest.mark.parametrize("field", [{"since": {"offset": 0, "epoch": "e"}}, {"rewind": 5}])
async def test_since_and_rewind_without_history_answer_not_recovered(
    hub: Hub, channel: str, field: dict[str, Any]
) -> None:
    alice = await hub.connect("alice")
    await alice.publish(channel.replace("*", "x"), 1)
    bob = await hub.connect("bob")
    await bob.send({"type": "subscribe", "channel": channel, "requestId": "r", **field})
    frames = bob.new_frames()
    assert frames[0] == {"type": "ack", "requestId": "r", "recovered": False}
    assert messages(frames) == []


async def test_live_messages_during_the_history_read_come_after_the_replay_once() -> None:
    class SlowHistory(MemoryHistoryStore):
        """A read that returns its page only after a publish raced it."""

        def __init__(self) -> None:
            super().__init__()
            self.reading = asyncio.Event()
            self.release = asyncio.Event()

        async def read(self, *args: Any, **kwargs: Any) -> HistoryPage:
            page = await super().read(*args, **kwargs)
            self.reading.set()
            await self.release.wait()
            return page

    history = SlowHistory()
    hub = await Hub(channels=CHANNELS, broker=MemoryBroker(history)).start()
    alice = await hub.connect("alice")
    for n in range(1, 4):
        await alice.publish("chat/1", n)
    bob = await hub.connect("bob")
    first = await MemoryHistoryStore.read(history, "app", "chat/1", Retention(100, 600))
    since = {"offset": 1, "epoch": first.position.epoch}
    subscribing = asyncio.create_task(
        bob.send({"type": "subscribe", "channel": "chat/1", "requestId": "r", "since": since})
    )
    async with asyncio.timeout(5):
        await history.reading.wait()
    await alice.publish("chat/1", 4)  # live while the page (up to 3) is being read
    assert bob.new_frames() == []  # held
    history.release.set()
    async with asyncio.timeout(5):
        await subscribing
    frames = bob.new_frames()
    assert frames[0]["recovered"] is True and frames[0]["offset"] == 3
    assert messages(frames) == [(2, 2), (3, 3), (4, 4)]


async def test_a_failing_history_read_undoes_the_subscribe() -> None:
    class BrokenHistory(MemoryHistoryStore):
        broken = True

        async def read(self, *args: Any, **kwargs: Any) -> HistoryPage:
            if self.broken:
                raise BrokerUnavailable("history store down")
            return await super().read(*args, **kwargs)

    history = BrokenHistory()
    hub = await Hub(channels=CHANNELS, broker=MemoryBroker(history)).start()
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    await bob.subscribe("chat/1", "s1")
    assert bob.new_frames() == [
        {"type": "error", "code": "backend_error", "message": "transient backend error, retry "
         "shortly", "requestId": "s1"}
    ]  # fmt: skip
    await alice.publish("chat/1", 1)
    assert bob.new_frames() == []  # not subscribed
    history.broken = False
    await bob.subscribe("chat/1", "s2")
    assert bob.new_frames()[0]["offset"] == 1


async def test_a_repeated_message_id_is_acked_as_a_duplicate_with_the_first_offset(
    hub: Hub,
) -> None:
    alice = await hub.connect("alice")
    bob = await subscribed(hub, "bob")
    for request_id in ("p1", "p2"):
        await alice.send(
            {"type": "publish", "channel": "chat/1", "data": 1, "requestId": request_id,
             "messageId": "m-1"}
        )  # fmt: skip
    first, second = alice.new_frames()
    assert second == {**first, "requestId": "p2", "duplicate": True}
    assert messages(bob.new_frames()) == [(1, 1)]
    await alice.send({"type": "publish", "channel": "room", "data": 1, "messageId": "m-1",
                      "requestId": "q1"})  # fmt: skip
    await alice.send({"type": "publish", "channel": "room", "data": 1, "messageId": "m-1",
                      "requestId": "q2"})  # fmt: skip
    assert alice.new_frames() == [
        {"type": "ack", "requestId": "q1"},
        {"type": "ack", "requestId": "q2", "duplicate": True},
    ]


async def test_a_message_id_window_ends() -> None:
    clock = FakeClock()
    broker = MemoryBroker(MemoryHistoryStore(clock=clock))
    hub = await Hub(channels=CHANNELS, broker=broker, clock=clock, dedup_window_s=10).start()
    alice = await hub.connect("alice")
    bob = await subscribed(hub, "bob", "room")
    frame = {"type": "publish", "channel": "room", "data": 1, "messageId": "m"}
    await alice.send(frame)
    clock.now += 9
    await alice.send(frame)
    clock.now += 2
    await alice.send(frame)
    assert messages(bob.new_frames()) == [(1, None), (1, None)]


async def test_the_rest_publish_is_recorded_and_deduplicated(hub: Hub) -> None:
    bob = await subscribed(hub, "bob")
    first = await hub.node.publish_as_server("app", "chat/1", b'"x"', message_id="m")
    again = await hub.node.publish_as_server("app", "chat/1", b'"x"', message_id="m")
    assert first.reached == 1 and not first.duplicate
    assert again.duplicate and again.position == first.position and again.reached == 0
    assert messages(bob.new_frames()) == [("x", 1)]
    page = await hub.node.channel_history("app", "chat/1", since=None, limit=10)
    assert page is not None and [r.data for r in page.records] == [b'"x"']
    assert await hub.node.channel_history("app", "room", since=None, limit=10) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"since": {"offset": "3", "epoch": "e"}}, BAD_SINCE),
        ({"since": {"offset": 1.5, "epoch": "e"}}, BAD_SINCE),
        ({"since": {"offset": -1, "epoch": "e"}}, BAD_SINCE),
        ({"since": {"offset": 3}}, BAD_SINCE),
        ({"since": {"offset": 3, "epoch": ""}}, BAD_SINCE),
        ({"since": 3}, BAD_SINCE),
        ({"rewind": -1}, BAD_REWIND),
        ({"rewind": 101}, BAD_REWIND),
        ({"rewind": "2"}, BAD_REWIND),
        ({"rewind": True}, BAD_REWIND),
        ({"rewind": 1, "since": {"offset": 0, "epoch": "e"}}, SINCE_AND_REWIND),
    ],
)
async def test_bad_since_or_rewind_is_malformed_and_the_connection_goes_on(
    hub: Hub, fields: dict[str, Any], message: str
) -> None:
    bob = await hub.connect("bob")
    await bob.send({"type": "subscribe", "channel": "chat/1", "requestId": "bad", **fields})
    assert bob.new_frames() == [
        {"type": "error", "code": "malformed_message", "message": message, "requestId": "bad"}
    ]
    assert "chat/1" not in bob.conn.subscriptions
    await bob.subscribe("chat/1", "ok")
    assert bob.new_frames()[0]["requestId"] == "ok"


@pytest.mark.parametrize("message_id", ["x" * 129, "", 5, ["m"]])
async def test_bad_message_id_is_malformed_and_nothing_is_published(
    hub: Hub, message_id: Any
) -> None:
    alice = await hub.connect("alice")
    bob = await subscribed(hub, "bob")
    await alice.send(
        {"type": "publish", "channel": "chat/1", "data": 1, "requestId": "p",
         "messageId": message_id}
    )  # fmt: skip
    assert alice.new_frames() == [
        {"type": "error", "code": "malformed_message", "message": BAD_MESSAGE_ID, "requestId": "p"}
    ]
    assert bob.new_frames() == []
    await alice.send({"type": "publish", "channel": "chat/1", "data": 2, "messageId": "x" * 128})
    assert messages(bob.new_frames()) == [(2, 1)]


async def test_directs_keep_no_history(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await hub.connect("chat/1")  # a peer named like a history channel
    await alice.direct("chat/1", 1)
    assert bob.new_frames() == [{"type": "direct", "from": "alice", "data": 1}]
