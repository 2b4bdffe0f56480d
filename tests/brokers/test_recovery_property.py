"""Recovery across the seam under concurrent publishing, as a property (spec 16.1).

Random programs interleave publish bursts (from two nodes, running concurrently with everything
else), disconnects of one subscriber and its resubscribes with ``since`` (on either node), over
the memory backend (one node) and two nodes on real Redis: one server, two shards and a Redis
Cluster. Whatever the interleaving, the
subscriber's messages, over all its connections in arrival order, are exactly offsets
``first + 1 .. last`` once each: no gap, no duplicate, and every resubscribe says
``recovered: true`` (the history is large enough to hold everything).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.brokers.memory import MemoryBroker, MemoryPresenceStore, MemoryUsageStore
from hubbub.brokers.memory_history import MemoryHistoryStore
from hubbub.brokers.redis_broker import RedisBroker
from hubbub.brokers.redis_history import RedisHistoryStore
from hubbub.brokers.redis_link import RedisLink, RedisShards
from hubbub.brokers.redis_stores import RedisPresenceStore, RedisUsageStore
from hubbub.core.connection import Connection
from hubbub.core.history import HistoryStore, Retention, RetentionRule, RetentionRules
from hubbub.core.node import Node, NodeLimits
from hubbub.core.outbound import OutFrame
from hubbub.core.principal import ChannelScope, Principal
from hubbub.protocol.patterns import compile_pattern
from tests.support.clock import FakeClock, FakeScheduler
from tests.support.redis import (
    SHARED_URL,
    delete_prefix,
    private_redis,
    redis_cluster,
    unique_prefix,
)

CHANNEL = "chat/room"
WAIT_S = 10.0

operations = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 6), st.integers(0, 1)),
        st.tuples(st.just("drop"), st.just(0), st.just(0)),
        st.tuples(st.just("resubscribe"), st.just(0), st.integers(0, 1)),
        st.tuples(st.just("yield"), st.integers(1, 5), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)


class WatchedSink:
    """Records frames; wakes a waiter on every one."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    def push(self, frame: OutFrame) -> None:
        self.frames.append(json.loads(frame.payload))
        self.changed.set()

    def push_after_pause(self, frame: OutFrame) -> None:
        self.push(frame)

    def close(self, code: int, reason: str) -> None:
        return None


def principal(peer_id: str) -> Principal:
    scope = ChannelScope(((compile_pattern("**"),),))
    actions = frozenset({"publish", "subscribe", "presence"})
    return Principal("app", peer_id, "k", actions, scope)


def make_node(node_id: str, broker: Any, presence: Any, usage: Any, history: HistoryStore) -> Node:
    clock = FakeClock()
    rules = RetentionRules(
        {"app": [RetentionRule(compile_pattern("chat/**"), Retention(10_000, 600))]}
    )
    return Node(
        node_id=node_id,
        broker=broker,
        presence=presence,
        usage=usage,
        limits=NodeLimits(rate_per_second=0, rate_burst=0),
        quotas={},
        clock=clock,
        scheduler=FakeScheduler(clock),
        history=history,
        retention=rules,
    )


@contextlib.asynccontextmanager
async def nodes(kind: str, urls: list[str] | None = None) -> AsyncIterator[list[Node]]:
    made: list[Node] = []
    prefix = unique_prefix()
    try:
        if urls is None:
            history = MemoryHistoryStore()
            made.append(
                make_node(
                    "m1", MemoryBroker(history), MemoryPresenceStore(), MemoryUsageStore(), history
                )
            )
        else:
            for n in range(2):
                shards = RedisShards([RedisLink(url, cluster=kind == "cluster") for url in urls])
                node_id = f"n{n}-{uuid.uuid4().hex[:6]}"
                presence = RedisPresenceStore(shards, prefix, node_id)
                usage = RedisUsageStore(shards, prefix, node_id)
                history_store = RedisHistoryStore(shards, prefix)
                broker = RedisBroker(
                    shards,
                    presence,
                    usage,
                    node_id=node_id,
                    prefix=prefix,
                    presence_ttl_s=30,
                    history=history_store,
                )
                made.append(make_node(node_id, broker, presence, usage, history_store))
        for node in made:
            await node.start()
        yield made
    finally:
        for node in made:
            await node.stop()
        if urls == [SHARED_URL]:
            await delete_prefix(6379, prefix)


@dataclass
class Subscriber:
    """One peer that must see every publication once, across reconnects."""

    sinks: list[WatchedSink] = field(default_factory=list)
    conn: Connection | None = None
    node: Node | None = None
    last: tuple[int, str] | None = None  # what the client remembers (offset, epoch)
    first_offset: int | None = None
    recovered: list[bool] = field(default_factory=list)

    def remember(self) -> None:
        for frame in self.sinks[-1].frames if self.sinks else ():
            if frame["type"] == "message":
                self.last = (frame["offset"], frame["epoch"])
            elif frame["type"] == "ack" and "offset" in frame and self.last is None:
                self.first_offset = frame["offset"]
                self.last = (frame["offset"], frame["epoch"])

    async def subscribe(self, node: Node) -> None:
        self.remember()
        sink = WatchedSink()
        conn = await node.open_connection(principal("sub"), sink)
        assert conn is not None
        self.sinks.append(sink)
        self.conn, self.node = conn, node
        frame: dict[str, Any] = {"type": "subscribe", "channel": CHANNEL, "requestId": "s"}
        if self.last is not None:
            frame["since"] = {"offset": self.last[0], "epoch": self.last[1]}
        await node.handle_frame(conn, json.dumps(frame))
        ack = next(f for f in sink.frames if f["type"] in ("ack", "error"))
        assert ack["type"] == "ack", ack
        if "recovered" in ack:
            self.recovered.append(ack["recovered"])
        self.remember()

    async def drop(self) -> None:
        if self.conn is not None and self.node is not None:
            await self.node.close_connection(self.conn)
            self.remember()
            self.conn = self.node = None

    def offsets(self) -> list[int]:
        return [f["offset"] for sink in self.sinks for f in sink.frames if f["type"] == "message"]


async def publish(node: Node, conn: Connection, count: int) -> None:
    for _ in range(count):
        await node.handle_frame(
            conn, json.dumps({"type": "publish", "channel": CHANNEL, "data": 1})
        )


async def run(
    kind: str, program: list[tuple[str, int, int]], urls: list[str] | None = None
) -> None:
    async with nodes(kind, urls) as hubs:
        publishers = []
        for n, node in enumerate(hubs):
            conn = await node.open_connection(principal(f"pub{n}"), WatchedSink())
            assert conn is not None
            publishers.append((node, conn))
        subscriber = Subscriber()
        await subscriber.subscribe(hubs[0])
        tasks: list[asyncio.Task[None]] = []
        published = 0
        for op, amount, where in program:
            if op == "publish":
                node, conn = publishers[where % len(publishers)]
                tasks.append(asyncio.create_task(publish(node, conn, amount)))
                published += amount
            elif op == "drop":
                await subscriber.drop()
            elif op == "resubscribe":
                await subscriber.drop()
                await subscriber.subscribe(hubs[where % len(hubs)])
            else:
                for _ in range(amount):
                    await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        if subscriber.conn is None:
            await subscriber.subscribe(hubs[-1])
        first = subscriber.first_offset
        assert first is not None
        last = first + published

        # Publications from the first subscribe on (which any of them may have preceded).
        def caught_up() -> bool:
            seen = subscriber.offsets()
            return last == first or (bool(seen) and seen[-1] >= last)

        async with asyncio.timeout(WAIT_S):
            while not caught_up():
                sink = subscriber.sinks[-1]
                sink.changed.clear()
                if not caught_up():
                    await sink.changed.wait()
        assert subscriber.offsets() == list(range(first + 1, last + 1))
        assert all(subscriber.recovered)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=operations)
async def test_no_gap_or_duplicate_across_resubscribes_in_memory(
    program: list[tuple[str, int, int]],
) -> None:
    await run("memory", program)


@pytest.fixture(params=["one-redis", "2-shards", "redis-cluster"])
async def redis_urls(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, list[str]]]:
    """Servers shared by all examples of a test (each example uses its own key prefix)."""
    if request.param == "one-redis":
        yield "redis", [SHARED_URL]
    elif request.param == "2-shards":
        async with private_redis() as second:
            yield "redis", [SHARED_URL, second.url]
    else:
        async with redis_cluster() as servers:
            yield "cluster", [servers[0].url]


@pytest.mark.integration
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(program=operations)
async def test_no_gap_or_duplicate_across_resubscribes_on_two_redis_nodes(
    redis_urls: tuple[str, list[str]], program: list[tuple[str, int, int]]
) -> None:
    kind, urls = redis_urls
    await run(kind, program, urls)
