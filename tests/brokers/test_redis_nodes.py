"""What only a multi-node backend can show: several RedisBroker nodes on one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest

from hubbub.brokers.redis_broker import RedisBroker
from hubbub.brokers.redis_link import shard_index
from hubbub.brokers.redis_stores import scoped, slot_group
from hubbub.brokers.redis_tally import TALLY_WAIT_S
from hubbub.core.broker import (
    AppQuota,
    BrokerUnavailable,
    Direct,
    NodeQuery,
    PresenceDelta,
    PresenceEntry,
    Publication,
)
from tests.brokers.conftest import BackendNode, RedisBackend
from tests.support.redis import delete_prefix, private_redis, redis_cli, unique_prefix

pytestmark = pytest.mark.integration  # every case runs Redis nodes

# With two shards this app lives on the second one, away from the liveness keys.
APP = "tenant-a"


def publication(channel: str, n: int = 1) -> Publication:
    return Publication(APP, channel, "alice", f'{{"n":{n}}}'.encode(), None, "a:1")


async def crash(node: BackendNode) -> None:
    """Stop a node the way kill -9 does: no goodbye, no cleanup in Redis."""
    broker = node.broker
    assert isinstance(broker, RedisBroker)
    await broker.liveness.stop_beating()
    await broker._shards.stop()


async def test_publish_reaches_watching_nodes_once(redis_backend: RedisBackend) -> None:
    a, b, c = [await redis_backend.node() for _ in range(3)]
    await b.broker.watch_channel(APP, "room")
    await a.broker.publish(publication("room"))
    await b.handler.wait_for(lambda: len(b.handler.of("publication")) == 1)
    # a delivered locally once and skipped its own envelope; c never subscribed.
    await a.broker.publish(publication("other"))
    await b.broker.unwatch_channel(APP, "room")
    await a.broker.publish(publication("room", 2))
    await b.broker.watch_channel(APP, "sync")
    await a.broker.publish(publication("sync"))
    await b.handler.wait_for(lambda: len(b.handler.of("publication")) == 2)
    assert [p.channel for p in b.handler.of("publication")] == ["room", "sync"]  # type: ignore[attr-defined]
    assert len(a.handler.of("publication")) == 4
    assert c.handler.events == []


async def test_wildcards_deliver_each_message_once(redis_backend: RedisBackend) -> None:
    a, b = await redis_backend.node(), await redis_backend.node()
    await b.broker.watch_channel(APP, "room.1")
    await b.broker.watch_pattern(APP, "room.*")
    await b.broker.watch_pattern(APP, "**")
    for n in range(5):
        await a.broker.publish(publication("room.1", n))
        await a.broker.publish(publication("hall", n))
    other_app = Publication("app2", "room.1", "x", b"1", None, None)
    await a.broker.publish(other_app)
    await b.broker.watch_channel(APP, "end")
    await b.broker.unwatch_pattern(APP, "**")
    await b.broker.unwatch_pattern(APP, "room.*")
    await a.broker.publish(publication("end"))
    await b.handler.wait_for(lambda: len(b.handler.of("publication")) == 11)
    got = [(p.channel, p.data) for p in b.handler.of("publication")]  # type: ignore[attr-defined]
    expected = [(ch, f'{{"n":{n}}}'.encode()) for n in range(5) for ch in ("room.1", "hall")]
    assert got == [*expected, ("end", b'{"n":1}')]


async def test_direct_and_kick_reach_the_peer_on_any_node(redis_backend: RedisBackend) -> None:
    a, b, c = [await redis_backend.node() for _ in range(3)]
    b.handler.local_peer_connections["bob"] = 1
    c.handler.local_peer_connections["bob"] = 1
    await b.broker.register_peer(APP, "bob")
    await c.broker.register_peer(APP, "bob")
    assert await a.broker.send_direct(Direct(APP, "bob", "alice", b"1", None, "a:1")) == 2
    assert await a.broker.send_direct(Direct(APP, "carol", "alice", b"1", None, "a:1")) == 0
    await b.handler.wait_for(lambda: len(b.handler.of("direct")) == 1)
    await c.handler.wait_for(lambda: len(c.handler.of("direct")) == 1)
    await c.broker.unregister_peer(APP, "bob")
    assert await a.broker.send_direct(Direct(APP, "bob", "alice", b"2", None, "a:1")) == 1
    assert await a.broker.disconnect_peer(APP, "bob", 4009, "disconnected by admin") == 1
    await b.handler.wait_for(lambda: len(b.handler.of("disconnect")) == 1)


async def test_a_senders_events_stay_ordered_across_nodes(redis_backend: RedisBackend) -> None:
    a, b = await redis_backend.node(), await redis_backend.node()
    b.handler.local_peer_connections["bob"] = 1
    await b.broker.watch_channel(APP, "room")
    await b.broker.watch_channel(APP, "hall")
    await b.broker.register_peer(APP, "bob")
    alice = (PresenceEntry("alice", None),)
    await a.broker.publish_presence(PresenceDelta(APP, "room", "alice", alice, ()))
    for n in range(50):
        await a.broker.publish(publication("room" if n % 2 else "hall", n))
        await a.broker.send_direct(Direct(APP, "bob", "alice", str(n).encode(), None, None))
    await b.handler.wait_for(lambda: len(b.handler.events) == 101)
    kinds = [kind for kind, _ in b.handler.events]
    assert kinds == ["presence"] + ["publication", "direct"] * 50
    datas = [p.data for p in b.handler.of("direct")]  # type: ignore[attr-defined]
    assert datas == [str(n).encode() for n in range(50)]


async def test_presence_and_usage_are_cluster_wide(redis_backend: RedisBackend) -> None:
    a, b = await redis_backend.node(), await redis_backend.node()
    await a.presence.add(APP, "room", PresenceEntry("alice", None), "a:1")
    assert await b.presence.add(APP, "room", PresenceEntry("alice", None), "b:1") == 1
    await b.presence.add(APP, "room", PresenceEntry("bob", None), "b:2")
    assert [m.peer_id for m in await a.presence.members(APP, "room")] == ["alice", "bob"]
    quota = AppQuota(max_concurrent_connections=3, max_messages_per_period=3)
    assert await a.usage.open_connection(APP, quota)
    assert await b.usage.open_connection(APP, quota)
    assert await b.usage.open_connection(APP, quota)
    assert not await a.usage.open_connection(APP, quota)
    for node in (a, b, a):
        assert await node.usage.count_message(APP, quota, 1000.0)
    assert not await b.usage.count_message(APP, quota, 1000.0)
    assert (await a.usage.snapshot(APP, quota, 1000.0)).messages_used == 4


async def test_a_dead_nodes_peers_leave_within_the_ttl() -> None:
    prefix = unique_prefix()
    backend = RedisBackend("redis://127.0.0.1:6379/0", prefix, presence_ttl_s=1.5)
    try:
        a, b = await backend.node(), await backend.node()
        await b.broker.watch_channel(APP, "room")
        await a.presence.add(APP, "room", PresenceEntry("alice", b'{"n":"A"}'), "a:1")
        await a.presence.add(APP, "room", PresenceEntry("carol", None), "a:2")
        await b.presence.add(APP, "room", PresenceEntry("carol", None), "b:1")
        quota = AppQuota(max_concurrent_connections=1)
        assert await a.usage.open_connection(APP, quota)
        backend.nodes.remove(a)
        await crash(a)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await b.handler.wait_for(lambda: len(b.handler.of("presence")) == 1)
        assert loop.time() - started < 1.5
        (delta,) = b.handler.of("presence")
        assert delta == PresenceDelta(
            APP, "room", "alice", (), (PresenceEntry("alice", b'{"n":"A"}'),)
        )
        # carol is still connected through b; the dead node's connection no longer counts.
        assert [m.peer_id for m in await b.presence.members(APP, "room")] == ["carol"]
        assert await b.usage.open_connection(APP, quota)
    finally:
        await backend.close()
        await delete_prefix(6379, prefix)


async def test_a_restarted_node_does_not_resurrect_its_old_members(
    redis_backend: RedisBackend,
) -> None:
    old = await redis_backend.node("fixed-id")
    await old.presence.add(APP, "room", PresenceEntry("ghost", None), "fixed-id:1")
    redis_backend.nodes.remove(old)
    await crash(old)
    watcher = await redis_backend.node()
    await watcher.broker.watch_channel(APP, "room")
    await redis_backend.node("fixed-id")
    assert await watcher.presence.members(APP, "room") == []
    await watcher.handler.wait_for(lambda: len(watcher.handler.of("presence")) == 1)


async def test_redis_outage_then_full_recovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hubbub.brokers")
    async with private_redis() as server:
        prefix = unique_prefix()
        backend = RedisBackend(server.url, prefix, presence_ttl_s=1.5)
        try:
            a, b = await backend.node(), await backend.node()
            await b.broker.watch_channel(APP, "room")
            await a.broker.watch_channel(APP, "room")
            await a.presence.add(APP, "room", PresenceEntry("alice", None), "a:1")
            await server.stop()
            for _ in range(3):
                with pytest.raises(BrokerUnavailable):
                    await a.broker.publish(publication("room"))
            # Local delivery went on: a's own subscribers got all three.
            assert len(a.handler.of("publication")) == 3
            with pytest.raises(BrokerUnavailable):
                await a.broker.send_direct(Direct(APP, "bob", "alice", b"1", None, None))
            # A peer that connects during the outage becomes reachable once Redis is back.
            b.handler.local_peer_connections["dan"] = 1
            await b.broker.register_peer(APP, "dan")  # deferred until Redis is back
            await server.start()
            # The nodes reconnect and resubscribe by themselves; alice is listed again.
            async with asyncio.timeout(10):
                while True:
                    with contextlib.suppress(BrokerUnavailable):
                        members = await b.presence.members(APP, "room")
                        if [m.peer_id for m in members] == ["alice"]:
                            break
                    await asyncio.sleep(0.05)  # reconnection has no event to await: poll
            async with asyncio.timeout(10):
                while not b.handler.of("publication"):
                    with contextlib.suppress(BrokerUnavailable):
                        await a.broker.publish(publication("room", 9))
                    await asyncio.sleep(0.05)  # b may still be resubscribing: poll
            to_dan = Direct(APP, "dan", "alice", b"hi", None, None)
            assert await a.broker.send_direct(to_dan) == 1
            await b.handler.wait_for(lambda: len(b.handler.of("direct")) == 1)
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len([w for w in warnings if "unreachable" in w.getMessage()]) == 2  # a and b
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        finally:
            await backend.close()


async def test_a_foreign_payload_is_logged_and_skipped(
    redis_backend: RedisBackend, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await redis_backend.node(), await redis_backend.node()
    await b.broker.watch_channel(APP, "room")
    channel = slot_group(scoped(redis_backend.prefix, "c", APP, "room"))
    url = redis_backend.urls[shard_index(channel, len(redis_backend.urls))]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    for junk in ("", "not an envelope", "P"):
        assert (await redis_cli(port, "PUBLISH", channel, junk)).strip() == "1"
    await a.broker.publish(publication("room"))
    await b.handler.wait_for(lambda: len(b.handler.of("publication")) == 1)
    assert len([r for r in caplog.records if "malformed envelope" in r.getMessage()]) == 3


async def test_a_counted_publish_adds_up_what_every_node_reached(
    redis_backend: RedisBackend,
) -> None:
    a, b, c = [await redis_backend.node() for _ in range(3)]
    a.handler.local_subscribers, b.handler.local_subscribers, c.handler.local_subscribers = 1, 3, 2
    for node in (a, b, c):
        await node.broker.watch_channel(APP, "room")  # a's own copy comes back and counts 0
    await c.broker.watch_pattern(APP, "ro*")  # c takes two copies and delivers one
    assert await a.broker.publish(publication("room"), count_everywhere=True) == 6
    assert await a.broker.publish(publication("room", 2)) == 1  # uncounted: this node only
    await c.handler.wait_for(lambda: len(c.handler.of("publication")) == 2)
    await b.handler.wait_for(lambda: len(b.handler.of("publication")) == 2)
    assert [p.data for p in c.handler.of("publication")] == [b'{"n":1}', b'{"n":2}']  # type: ignore[attr-defined]


async def test_a_kick_counts_the_connections_closed_on_every_node(
    redis_backend: RedisBackend,
) -> None:
    a, b, c = [await redis_backend.node() for _ in range(3)]
    a.handler.local_peer_connections["bob"] = 1
    b.handler.local_peer_connections["bob"] = 2
    for node in (a, b):
        await node.broker.register_peer(APP, "bob")
    assert await c.broker.disconnect_peer(APP, "bob", 4020, "disconnected by admin") == 3
    assert await c.broker.disconnect_peer(APP, "bob", 4020, "disconnected by admin") == 0
    assert len(a.handler.of("disconnect")) == len(b.handler.of("disconnect")) == 1


async def test_a_query_gathers_one_answer_from_every_node(
    redis_backend: RedisBackend,
) -> None:
    a, b, c = [await redis_backend.node() for _ in range(3)]
    for count, node in enumerate((a, b, c), start=1):
        node.handler.local_peer_connections["peer"] = count
    query = NodeQuery(APP, "connections", channel="room", peer_id="bob", limit=3)
    answers = await b.broker.query_nodes(query)
    assert answers[0].node == b.handler.node_id  # the asking node first
    assert sorted((x.node, x.connection_count) for x in answers) == sorted(
        (n.handler.node_id, i) for i, n in enumerate((a, b, c), start=1)
    )
    for node in (a, b, c):
        assert node.handler.questions == [query]  # each asked once, the query intact
    # Answers are matched to their question: two at once from two nodes do not mix.
    first, second = await asyncio.gather(
        a.broker.query_nodes(NodeQuery(APP, "channels", prefix="x/")),
        c.broker.query_nodes(NodeQuery(APP, "channels", prefix="y/")),
    )
    assert {ch.channel for x in first for ch in x.channels} == {
        "x/" + n.handler.node_id for n in (a, b, c)
    }
    assert {ch.channel for x in second for ch in x.channels} == {
        "y/" + n.handler.node_id for n in (a, b, c)
    }


async def test_a_stopped_node_no_longer_answers(redis_backend: RedisBackend) -> None:
    a, b = await redis_backend.node(), await redis_backend.node()
    await b.broker.stop()
    redis_backend.nodes.remove(b)
    loop = asyncio.get_running_loop()
    began = loop.time()
    answers = await a.broker.query_nodes(NodeQuery(APP, "nodes"))
    assert [x.node for x in answers] == [a.handler.node_id]
    assert loop.time() - began < TALLY_WAIT_S  # nobody else held the question: no wait


async def test_a_copy_nobody_answers_for_costs_a_counted_publish_a_short_wait(
    redis_backend: RedisBackend,
) -> None:
    a = await redis_backend.node()
    channel = slot_group(scoped(redis_backend.prefix, "c", APP, "room"))
    url = redis_backend.urls[shard_index(channel, len(redis_backend.urls))]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    # A subscriber that is no Hubbub node (or a node that died holding the copy).
    with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
        silent.sendall(f"SUBSCRIBE {channel}\r\n".encode())
        assert b"subscribe" in silent.recv(4096)
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await a.broker.publish(publication("room"), count_everywhere=True) == 1
        waited = loop.time() - began
        assert TALLY_WAIT_S <= waited < TALLY_WAIT_S + 1.0


async def test_a_node_that_holds_a_question_but_never_answers_costs_a_short_wait(
    redis_backend: RedisBackend,
) -> None:
    a, b = await redis_backend.node(), await redis_backend.node()
    asked = f"{redis_backend.prefix}:ask"
    url = redis_backend.urls[shard_index(asked, len(redis_backend.urls))]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
        silent.sendall(f"SUBSCRIBE {asked}\r\n".encode())
        assert b"subscribe" in silent.recv(4096)
        loop = asyncio.get_running_loop()
        began = loop.time()
        answers = await a.broker.query_nodes(NodeQuery(APP, "nodes"))
        waited = loop.time() - began
    assert sorted(x.node for x in answers) == sorted([a.handler.node_id, b.handler.node_id])
    assert TALLY_WAIT_S <= waited < TALLY_WAIT_S + 1.0
