"""Backends under test: every contract test runs against memory and a real Redis.

``backend`` is a factory of nodes that share one backend: with memory there is only one node
(the memory broker is single-process by definition), with Redis each call adds a node.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from hubbub.brokers.memory import MemoryBroker, MemoryPresenceStore, MemoryUsageStore
from hubbub.brokers.memory_history import MemoryHistoryStore
from hubbub.brokers.redis_broker import RedisBroker
from hubbub.brokers.redis_events import RedisEventRouter
from hubbub.brokers.redis_history import RedisHistoryStore
from hubbub.brokers.redis_link import RedisLink, RedisShards
from hubbub.brokers.redis_stores import RedisPresenceStore, RedisUsageStore
from hubbub.core.broker import (
    Broker,
    ChannelInfo,
    Direct,
    NodeAnswer,
    NodeQuery,
    PresenceDelta,
    PresenceStore,
    Publication,
    UsageStore,
)
from hubbub.core.events import EventSink
from hubbub.core.history import HistoryStore
from tests.support.clock import FakeClock
from tests.support.redis import (
    SHARED_URL,
    PrivateRedis,
    delete_prefix,
    private_redis,
    redis_cluster,
    unique_prefix,
)

EVENT_TIMEOUT_S = 5.0


@dataclass
class RecordingHandler:
    """A node stand-in: records what the broker delivers, reports set reach counts."""

    local_subscribers: int = 1
    local_peer_connections: dict[str, int] = field(default_factory=dict)
    node_id: str = "n"
    questions: list[NodeQuery] = field(default_factory=list)
    events: list[tuple[str, object]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _record(self, kind: str, item: object) -> None:
        self.events.append((kind, item))
        self.changed.set()

    def deliver_publication(self, publication: Publication) -> int:
        self._record("publication", publication)
        return self.local_subscribers

    def deliver_direct(self, direct: Direct) -> int:
        count = self.local_peer_connections.get(direct.to, 0)
        if count:
            self._record("direct", direct)
        return count

    def deliver_presence(self, delta: PresenceDelta) -> None:
        self._record("presence", delta)

    def disconnect_local_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int:
        count = self.local_peer_connections.pop(peer_id, 0)
        if count:
            self._record("disconnect", (app_id, peer_id, code, reason))
        return count

    def answer_query(self, query: NodeQuery) -> NodeAnswer:
        """What a node would list: its own connection count and one channel."""
        self.questions.append(query)
        return NodeAnswer(
            self.node_id,
            channels=(ChannelInfo(f"{query.prefix or ''}{self.node_id}", 1, 0.5),),
            connection_count=sum(self.local_peer_connections.values()),
        )

    def of(self, kind: str) -> list[object]:
        return [item for k, item in self.events if k == kind]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@dataclass
class BackendNode:
    broker: Broker
    presence: PresenceStore
    usage: UsageStore
    handler: RecordingHandler
    history: HistoryStore
    events: RedisEventRouter | None = None


class Backend:
    kind: str
    multi_node: bool
    clock: FakeClock

    async def node(self, node_id: str | None = None) -> BackendNode:
        raise NotImplementedError


class MemoryBackend(Backend):
    kind = "memory"
    multi_node = False

    def __init__(self) -> None:
        self.made = 0
        self.clock = FakeClock()
        self.nodes: list[BackendNode] = []

    async def node(self, node_id: str | None = None) -> BackendNode:
        assert self.made == 0, "the memory broker is one node"
        self.made += 1
        history = MemoryHistoryStore(clock=self.clock)
        node = BackendNode(
            MemoryBroker(history),
            MemoryPresenceStore(),
            MemoryUsageStore(),
            RecordingHandler(),
            history,
        )
        await node.broker.start(node.handler)
        self.nodes.append(node)
        return node

    async def restart(self) -> BackendNode:
        """The single node restarts: everything it kept in memory is gone."""
        for node in self.nodes:
            await node.broker.stop()
        self.nodes.clear()
        self.made = 0
        return await self.node()

    async def close(self) -> None:
        for node in self.nodes:
            await node.broker.stop()
        self.nodes.clear()


class RedisBackend(Backend):
    kind = "redis"
    multi_node = True
    cluster = False

    def __init__(self, url: str | list[str], prefix: str, presence_ttl_s: float = 3.0) -> None:
        self.urls = [url] if isinstance(url, str) else url
        self.url = self.urls[0]
        self.prefix = prefix
        self.presence_ttl_s = presence_ttl_s
        self.nodes: list[BackendNode] = []
        self.clock = FakeClock()

    async def node(
        self, node_id: str | None = None, events: EventSink | None = None
    ) -> BackendNode:
        """``events``: the node's webhook sink (its lifecycle events go through a router)."""
        node_id = node_id or uuid.uuid4().hex[:8]
        shards = RedisShards([RedisLink(url, cluster=self.cluster) for url in self.urls])
        router = RedisEventRouter(node_id, events) if events is not None else None
        presence = RedisPresenceStore(shards, self.prefix, node_id, router)
        usage = RedisUsageStore(shards, self.prefix, node_id)
        history = RedisHistoryStore(shards, self.prefix, clock=self.clock)
        broker = RedisBroker(
            shards,
            presence,
            usage,
            node_id=node_id,
            prefix=self.prefix,
            presence_ttl_s=self.presence_ttl_s,
            events=router,
            history=history,
        )
        node = BackendNode(
            broker, presence, usage, RecordingHandler(node_id=node_id), history, router
        )
        await broker.start(node.handler)
        self.nodes.append(node)
        return node

    async def close(self) -> None:
        for node in self.nodes:
            await node.broker.stop()
        self.nodes.clear()


class ClusterBackend(RedisBackend):
    cluster = True


@contextlib.asynccontextmanager
async def open_backend(kind: str) -> AsyncIterator[Backend]:
    if kind == "memory":
        memory = MemoryBackend()
        try:
            yield memory
        finally:
            await memory.close()
        return
    if kind == "redis-cluster":
        async with redis_cluster() as servers:
            cluster = ClusterBackend(servers[0].url, unique_prefix())
            try:
                yield cluster
            finally:
                await cluster.close()
        return
    async with contextlib.AsyncExitStack() as stack:
        urls = [SHARED_URL]
        if kind == "redis-2-shards":
            urls.append((await stack.enter_async_context(private_redis())).url)
        redis_backend = RedisBackend(urls, unique_prefix())
        try:
            yield redis_backend
        finally:
            await redis_backend.close()
            await delete_prefix(6379, redis_backend.prefix)


# Cases that need Redis (the shared server on 6379, or private ones) are integration tests:
# the unit run (``pytest -m "not integration"``) keeps only the memory cases and needs no
# network.
NEEDS_REDIS = pytest.mark.integration


def _redis(kind: str) -> object:
    return pytest.param(kind, marks=NEEDS_REDIS)


@pytest.fixture(params=["memory", _redis("redis"), _redis("redis-2-shards")])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with open_backend(request.param) as opened:
        yield opened


@pytest.fixture(
    params=["memory", _redis("redis"), _redis("redis-2-shards"), _redis("redis-cluster")]
)
async def history_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """The history cases run on a Redis Cluster too (its keys share the channel's slot)."""
    async with open_backend(request.param) as opened:
        yield opened


@pytest.fixture(params=[_redis("one-redis"), _redis("2-shards")])
async def redis_backend(request: pytest.FixtureRequest) -> AsyncIterator[RedisBackend]:
    async with contextlib.AsyncExitStack() as stack:
        urls = [SHARED_URL]
        if request.param == "2-shards":
            urls.append((await stack.enter_async_context(private_redis())).url)
        backend = RedisBackend(urls, unique_prefix())
        try:
            yield backend
        finally:
            await backend.close()
            await delete_prefix(6379, backend.prefix)


@pytest.fixture(params=[_redis("private")])
async def private_backend() -> AsyncIterator[tuple[RedisBackend, PrivateRedis]]:
    """Redis nodes on a private server, which a test may flush (never the shared one)."""
    async with private_redis() as server:
        redis_backend = RedisBackend(server.url, unique_prefix())
        try:
            yield redis_backend, server
        finally:
            await redis_backend.close()
