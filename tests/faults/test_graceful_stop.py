"""A node stopping with many connections (issue 11 item 5, the reconnect storm's restart).

The stopping node releases its connections locally and its broker removes the node's
presence and usage in one pass at stop, instead of ~3 Redis round trips per connection.
The contract is unchanged: every peer of the stopped node leaves, for the other nodes'
subscribers, promptly; nothing of it stays in Redis. Each test starts its own
redis-server on a free port and two nodes on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.faults.test_redis_and_node_faults import subscribed, two_nodes
from tests.support.redis import private_redis

pytestmark = pytest.mark.integration

CHANNELS = [f"room/{i}" for i in range(5)]
PEERS_ON_A = 100
# SIGTERM -> exit with the default 1 s drain, on a loaded 2-core machine.
LEFT_WITHIN_S = 8.0
# Round trips the per-connection release made (presence and usage scripts, the index SREM,
# the peer's UNSUBSCRIBE): a stopping node with PEERS_ON_A connections must not make them
# each. (Commandstats also counts the commands scripts run, so none of those is listed.)
PER_CONNECTION_COMMANDS = ("evalsha", "srem", "unsubscribe")


@dataclass
class Stopped:
    doomed: set[str]  # A's peers
    left_at: dict[str, float]  # peer -> when a watcher on B saw its left (monotonic)
    sigterm_at: float
    calls: dict[str, int]  # Redis command -> calls from SIGTERM to A's exit
    redis: Redis
    observers: dict[str, Any]


def _calls(stats: dict[str, Any]) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


@contextlib.asynccontextmanager
async def a_stopped_node() -> AsyncIterator[Stopped]:
    """A with PEERS_ON_A subscribers over CHANNELS, watchers of each channel on B; A gets
    SIGTERM and exits."""
    async with (
        private_redis() as server,
        two_nodes(server.url) as (a, b),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        redis = Redis.from_url(server.url)
        observers = {c: await subscribed(session, b, c) for c in CHANNELS}
        doomed = [await subscribed(session, a, CHANNELS[i % 5]) for i in range(PEERS_ON_A)]
        doomed_ids = {ws.peer_id for ws in doomed}
        left_at: dict[str, float] = {}
        all_left = asyncio.Event()

        async def watch(ws: Any) -> None:
            async for msg in ws:
                frame = json.loads(msg.data)
                if frame["type"] == "presence":
                    for entry in frame["left"]:
                        left_at.setdefault(entry["peerId"], time.monotonic())
                    if doomed_ids <= set(left_at):
                        all_left.set()

        watchers = [asyncio.create_task(watch(ws)) for ws in observers.values()]
        before = _calls(await redis.info("commandstats"))
        sigterm_at = time.monotonic()
        assert await a.stop() == 0
        after = _calls(await redis.info("commandstats"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LEFT_WITHIN_S):
                await all_left.wait()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        calls = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        try:
            yield Stopped(doomed_ids, left_at, sigterm_at, calls, redis, observers)
        finally:
            await redis.aclose()
            assert b.process.returncode is None
            assert "Traceback" not in a.log_text() + b.log_text()


async def test_a_stopping_nodes_peers_all_leave_for_the_other_node_and_nothing_stays() -> None:
    async with a_stopped_node() as stopped:
        missing = stopped.doomed - set(stopped.left_at)
        assert not missing, f"{len(missing)} of A's peers never left for B's watchers"
        slowest = max(stopped.left_at[p] for p in stopped.doomed) - stopped.sigterm_at
        assert slowest <= LEFT_WITHIN_S
        # No ghost presence: each channel lists only B's watcher, A's node index and usage
        # field are gone, and only B is a known node.
        redis = stopped.redis
        for channel, observer in stopped.observers.items():
            listed = await redis.zrange("{faults:pr:4:demo:" + channel + "}:order", 0, -1)
            assert [p.decode() for p in listed] == [observer.peer_id]
            counts = await redis.hgetall("{faults:pr:4:demo:" + channel + "}:count")
            assert {p.decode() for p in counts} == {observer.peer_id}
        indices = [key async for key in redis.scan_iter(match="faults:node:*:presence")]
        assert len(indices) == 1  # B's (its watchers)
        nodes = await redis.smembers("faults:nodes")
        assert len(nodes) == 1
        usage = await redis.hgetall("{faults:u:4:demo:}:conns")
        assert {node for node in usage} == nodes, usage
        assert int(next(iter(usage.values()))) == len(CHANNELS)


async def test_a_stopping_node_sends_no_redis_command_per_connection() -> None:
    async with a_stopped_node() as stopped:
        per_connection = {name: stopped.calls.get(name, 0) for name in PER_CONNECTION_COMMANDS}
        # B's own heartbeats and reaper may add a few; one per A connection would be 100.
        assert sum(per_connection.values()) < 10, per_connection
        # What the one pass sends instead: a pipelined removal per listed connection and a
        # left per peer (counted here so the test sees the pass happened at all).
        assert stopped.calls.get("eval", 0) >= PEERS_ON_A
        assert stopped.calls.get("publish", 0) >= PEERS_ON_A
