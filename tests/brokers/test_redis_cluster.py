"""The sharded path: RedisBroker nodes on a Redis Cluster of 3 primaries (SSUBSCRIBE/SPUBLISH)."""

from __future__ import annotations

import pytest

from hubbub.core.broker import AppQuota, Direct, PresenceEntry, Publication
from tests.brokers.conftest import RedisBackend
from tests.support.redis import redis_cli, redis_cluster, unique_prefix

pytestmark = pytest.mark.integration

APP = "app1"


class ClusterBackend(RedisBackend):
    cluster = True


async def test_sharded_cluster_routes_like_a_single_redis() -> None:
    async with redis_cluster() as servers:
        backend = ClusterBackend(servers[0].url, unique_prefix())
        try:
            a, b = await backend.node(), await backend.node()
            channels = [f"room-{n}" for n in range(12)]
            for channel in channels:
                await b.broker.watch_channel(APP, channel)
            await b.broker.watch_pattern(APP, "room-1*")
            for n, channel in enumerate(channels):
                await a.broker.publish(
                    Publication(APP, channel, "alice", str(n).encode(), None, None)
                )
            # Exact and wildcard copies of room-1, room-10 and room-11 both reach b: each
            # publication is handed to the node once.
            await b.handler.wait_for(lambda: len(b.handler.of("publication")) == 12)
            got = sorted(p.data for p in b.handler.of("publication"))  # type: ignore[attr-defined]
            assert got == sorted(str(n).encode() for n in range(12))
            # The channels are spread over the primaries' slots.
            holders = 0
            for server in servers:
                listed = await redis_cli(server.port, "PUBSUB", "SHARDCHANNELS")
                holders += any(f":{channel}" in listed for channel in channels)
            assert holders == 3

            b.handler.local_peer_connections["bob"] = 1
            await b.broker.register_peer(APP, "bob")
            assert await a.broker.send_direct(Direct(APP, "bob", "alice", b"1", None, None)) == 1
            assert await a.broker.send_direct(Direct(APP, "zed", "alice", b"1", None, None)) == 0
            await b.handler.wait_for(lambda: len(b.handler.of("direct")) == 1)

            await a.presence.add(APP, "room-1", PresenceEntry("alice", None), "a:1")
            assert await b.presence.add(APP, "room-1", PresenceEntry("alice", None), "b:1") == 1
            assert [m.peer_id for m in await b.presence.members(APP, "room-1")] == ["alice"]
            quota = AppQuota(max_concurrent_connections=1)
            assert await a.usage.open_connection(APP, quota)
            assert not await b.usage.open_connection(APP, quota)
        finally:
            await backend.close()
