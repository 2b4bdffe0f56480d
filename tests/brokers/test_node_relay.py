"""Node.relay: a request every node answers its part of, through the broker's node queries
(the conversation bus's REST commands reach the node a conversation runs on this way)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from hubbub.brokers.redis_broker import RedisBroker
from hubbub.brokers.redis_link import RedisLink, RedisShards
from hubbub.brokers.redis_stores import RedisPresenceStore, RedisUsageStore
from tests.core.fakes import Hub
from tests.support.redis import SHARED_URL, delete_prefix, unique_prefix


def redis_hub(prefix: str) -> Hub:
    node_id = uuid.uuid4().hex[:8]
    shards = RedisShards([RedisLink(SHARED_URL)])
    presence = RedisPresenceStore(shards, prefix, node_id)
    usage = RedisUsageStore(shards, prefix, node_id)
    broker = RedisBroker(
        shards, presence, usage, node_id=node_id, prefix=prefix, presence_ttl_s=3.0
    )
    return Hub(broker=broker, presence=presence, usage=usage)


# Two nodes on the shared Redis: the tests that take them are integration tests.
@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.integration)])
async def two_nodes() -> AsyncIterator[tuple[Hub, Hub]]:
    prefix = unique_prefix()
    a, b = redis_hub(prefix), redis_hub(prefix)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.node.stop()
        await b.node.stop()
        await delete_prefix(6379, prefix)


async def test_one_node_answers_what_it_has_and_the_asker_gets_only_answers() -> None:
    hub = await Hub().start()
    hub.node.handle_relay("echo", lambda payload: payload.upper() if payload != b"skip" else None)
    assert await hub.node.relay("app", "echo", b"hi") == [b"HI"]
    assert await hub.node.relay("app", "echo", b"skip") == []
    assert await hub.node.relay("app", "no-such-topic", b"hi") == []


async def test_a_failing_handler_is_no_answer_and_the_others_still_count(
    two_nodes: tuple[Hub, Hub], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = two_nodes

    def broken(payload: bytes) -> bytes | None:
        raise RuntimeError("a bug")

    a.node.handle_relay("t", broken)
    b.node.handle_relay("t", lambda payload: b"b answers")
    assert await a.node.relay("app", "t", b"x") == [b"b answers"]
    assert await b.node.relay("app", "t", b"x") == [b"b answers"]
    assert "relay handler for 't' failed" in caplog.text


async def test_across_nodes_the_node_that_holds_the_thing_answers(
    two_nodes: tuple[Hub, Hub],
) -> None:
    a, b = two_nodes
    held = {id(a): b"thing-a", id(b): b"thing-b"}
    for hub in (a, b):
        mine = held[id(hub)]
        hub.node.handle_relay(
            "find",
            lambda payload, mine=mine, hub=hub: b"found on " + mine if payload == mine else None,
        )
    assert await b.node.relay("app", "find", b"thing-a") == [b"found on thing-a"]
    assert await a.node.relay("app", "find", b"thing-b") == [b"found on thing-b"]
    assert await a.node.relay("app", "find", b"nowhere") == []
    # Binary payloads (msgpack) travel intact, and every node that answers is heard.
    for hub in (a, b):
        hub.node.handle_relay("all", lambda payload: payload + b"\x00\xff")
    assert sorted(await a.node.relay("app", "all", b"\xc1")) == [b"\xc1\x00\xff"] * 2
