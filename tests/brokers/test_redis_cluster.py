"""The sharded path: RedisBroker nodes on a Redis Cluster of 3 primaries (SSUBSCRIBE/SPUBLISH)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from hubbub.brokers.redis_stores import scoped, slot_group
from hubbub.core.broker import AppQuota, BrokerUnavailable, Direct, PresenceEntry, Publication
from tests.brokers.conftest import RedisBackend
from tests.support.redis import PrivateRedis, redis_cli, redis_cluster, unique_prefix

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


async def move_slot(servers: list[PrivateRedis], key: str) -> PrivateRedis:
    """Hand the slot of ``key`` to another primary (it holds no keys); returns the new owner."""
    slot = (await redis_cli(servers[0].port, "CLUSTER", "KEYSLOT", key)).strip()
    ids = {s.port: (await redis_cli(s.port, "CLUSTER", "MYID")).strip() for s in servers}
    nodes = (await redis_cli(servers[0].port, "CLUSTER", "NODES")).splitlines()
    owner = next(line for line in nodes if _owns(line, int(slot)))
    owner_port = int(owner.split()[1].split("@")[0].rsplit(":", 1)[1])
    source = next(s for s in servers if s.port == owner_port)
    target = next(s for s in servers if s.port != owner_port)
    await redis_cli(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
    await redis_cli(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
    for server in servers:
        await redis_cli(server.port, "CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
    return target


def _owns(nodes_line: str, slot: int) -> bool:
    for part in nodes_line.split()[8:]:
        low, _, high = part.partition("-")
        if low.isdigit() and int(low) <= slot <= int(high or low):
            return True
    return False


async def test_a_channel_whose_slot_moves_is_resubscribed_at_its_new_owner() -> None:
    async with redis_cluster() as servers:
        backend = ClusterBackend(servers[0].url, unique_prefix())
        try:
            a, b = await backend.node(), await backend.node()
            await b.broker.watch_channel(APP, "room")
            await a.broker.publish(Publication(APP, "room", "alice", b"0", None, None))
            await b.handler.wait_for(lambda: len(b.handler.of("publication")) == 1)

            name = slot_group(scoped(backend.prefix, "c", APP, "room"))
            target = await move_slot(servers, name)
            # b re-subscribes at the new owner by itself; a's stale slot table is corrected
            # by the MOVED answer to its SPUBLISH. Messages sent while b moves are lost
            # (pub/sub is at most once), so keep publishing until one arrives.
            sent = 0
            async with asyncio.timeout(10):
                while len(b.handler.of("publication")) < 2:
                    sent += 1
                    with contextlib.suppress(BrokerUnavailable):
                        await a.broker.publish(
                            Publication(APP, "room", "alice", str(sent).encode(), None, None)
                        )
                    await asyncio.sleep(0.05)  # re-homing has no event to await: poll
            listed = await redis_cli(target.port, "PUBSUB", "SHARDNUMSUB", name)
            assert listed.split()[-1] == "1"
        finally:
            await backend.close()
