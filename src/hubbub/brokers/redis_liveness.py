"""Node liveness: each node's heartbeat, and the reaping of nodes that stopped beating.

Each node refreshes ``<prefix>:node:<id>:alive`` (a TTL of half ``presence_ttl_s``) and lists
itself in ``<prefix>:nodes``; every sixth of the TTL one node, holding a short lock, looks for
nodes whose key expired and removes their presence (the ``left`` deltas go out through the
``announce`` callback, to every node) and their connection counts. A node starting with a fixed
id first reaps what a previous incarnation left behind. Everything lives on the first shard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from hubbub.brokers.redis_link import RedisLink
from hubbub.brokers.redis_sender import stop_task
from hubbub.brokers.redis_stores import RedisPresenceStore, RedisUsageStore
from hubbub.core.broker import BrokerUnavailable
from hubbub.core.presence import PresenceDelta

log = logging.getLogger(__name__)

# Sends a reaped node's ``left`` deltas to every node (in one pipelined write, not one
# round trip each).
Announce = Callable[[list[PresenceDelta]], Awaitable[None]]


class NodeLiveness:
    def __init__(
        self,
        home: RedisLink,
        presence: RedisPresenceStore,
        usage: RedisUsageStore,
        announce: Announce,
        *,
        node_id: str,
        prefix: str,
        presence_ttl_s: float,
    ) -> None:
        self._home = home
        self._presence = presence
        self._usage = usage
        self._announce = announce
        self._node_id = node_id
        self._prefix = prefix
        self._alive_ttl_ms = max(100, int(presence_ttl_s * 500))
        self._tick_s = presence_ttl_s / 6
        self._loop_task: asyncio.Task[None] | None = None
        # After an outage every node's heartbeat lapsed at once; reaping before they have
        # had a chance to beat again would make all their peers flap (left, then joined).
        self._reap_not_before = 0.0

    def _node_key(self, node_id: str, what: str) -> str:
        return f"{self._prefix}:node:{node_id}:{what}"

    async def start(self) -> None:
        """Reap a previous incarnation, beat once, and keep beating (and reaping)."""
        try:
            await self.reap(self._node_id)
            await self.heartbeat()
        except BrokerUnavailable:
            pass  # the loop beats as soon as Redis answers
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop_beating(self) -> None:
        """Stop the heartbeat and the reaping, leaving Redis as it is (as a crash would)."""
        if self._loop_task is not None:
            await stop_task(self._loop_task)
            self._loop_task = None

    async def stop(self) -> None:
        """Stop beating and leave nothing behind (when Redis answers)."""
        await self.stop_beating()
        try:
            await self.reap(self._node_id)
            client = self._home.client
            await self._home.run(client.delete(self._node_key(self._node_id, "alive")))
        except BrokerUnavailable:
            pass  # the other nodes reap this one once its heartbeat expires

    def hold_off_reaping(self) -> None:
        """Redis is back after an outage: give every node time to beat again first."""
        grace_s = self._alive_ttl_ms / 1000 + self._tick_s
        self._reap_not_before = asyncio.get_running_loop().time() + grace_s

    async def heartbeat(self) -> None:
        client = self._home.client

        async def beat() -> None:
            pipe = client.pipeline(transaction=False)
            pipe.set(self._node_key(self._node_id, "alive"), b"1", px=self._alive_ttl_ms)
            pipe.sadd(f"{self._prefix}:nodes", self._node_id)
            await pipe.execute()

        await self._home.run(beat())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                await self.heartbeat()
                await self._reap_dead_nodes()
            except BrokerUnavailable:
                continue
            except Exception:
                log.exception("unexpected error in the node liveness loop")

    async def _reap_dead_nodes(self) -> None:
        client = self._home.client
        lock = f"{self._prefix}:reaper"
        hold_ms = max(100, int(self._tick_s * 2000))
        if asyncio.get_running_loop().time() < self._reap_not_before:
            return
        got = await self._home.run(client.set(lock, self._node_id, nx=True, px=hold_ms))
        if not got:
            return
        nodes: set[bytes] = await self._home.run(client.smembers(f"{self._prefix}:nodes"))
        for raw in nodes:
            node_id = raw.decode()
            if node_id == self._node_id:
                continue
            alive = await self._home.run(client.exists(self._node_key(node_id, "alive")))
            if not alive:
                log.info("node %s stopped heartbeating: removing its presence", node_id)
                await self.reap(node_id)

    async def reap(self, node_id: str) -> None:
        """Remove what ``node_id`` held: its connection counts and its presence."""
        await self._usage.forget_node(node_id)
        await self._announce(await self._presence.reap_node(node_id))
        client = self._home.client
        await self._home.run(client.srem(f"{self._prefix}:nodes", node_id))
