"""Redis goes away and comes back (documented errors, then full recovery); Redis Cluster."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from metered_realtime import (
    Direct,
    Message,
    Presence,
    ServerRequestError,
    SignallingConnectError,
)

from tests.cluster.conftest import demo_token, running_cluster, sdk_client
from tests.support.redis import private_redis, redis_cli, redis_cluster
from tests.support.server import history_everywhere

pytestmark = pytest.mark.integration


def peers(entries: tuple[object, ...]) -> list[str]:
    return [entry.peer_id for entry in entries]  # type: ignore[attr-defined]


async def test_redis_restart_backend_error_then_recovery() -> None:
    async with private_redis() as redis, running_cluster(redis.url) as (a, b, c):
        async with (
            sdk_client(a, token=demo_token("alice")) as alice,
            sdk_client(b, token=demo_token("bob")) as bob,
            sdk_client(b, token=demo_token("carol")) as carol,
        ):
            for client in (alice, bob, carol):
                await client.client.subscribe("room")
                await client.next(Presence)
            await redis.stop()
            with pytest.raises(ServerRequestError) as failed:
                await bob.client.publish("room", "during outage")
            assert failed.value.code == "backend_error"
            with pytest.raises(ServerRequestError) as failed_send:
                await bob.client.send("alice", "during outage")
            assert failed_send.value.code == "backend_error"
            if history_everywhere():
                # With history the offset comes from Redis: a publish it cannot take is
                # delivered nowhere (so the client's retry cannot duplicate it for anyone).
                assert not carol.of(Message)
            else:
                # Same node: still delivered. The sockets stay open.
                assert (await carol.next(Message)).data == "during outage"
            assert bob.client.state == "connected"
            async with sdk_client(c, token=demo_token("eve")) as eve:
                with pytest.raises(ServerRequestError) as refused:
                    await eve.client.subscribe("room")
                assert refused.value.code == "backend_error"

            await redis.start()
            async with asyncio.timeout(15):
                while not alice.of(Message):
                    with contextlib.suppress(ServerRequestError):
                        await bob.client.publish("room", "after")
                    await asyncio.sleep(0.1)  # the nodes reconnect on their own: poll
            # Presence was written again by every node: a newcomer sees everyone.
            async with sdk_client(c, token=demo_token("dave")) as dave:
                await dave.client.subscribe("room")
                snapshot = await dave.next(Presence)
                assert sorted(peers(snapshot.joined)) == ["alice", "bob", "carol"]
                await alice.client.send("dave", "welcome back")
        for node in (a, b, c):
            log = node.log_text()
            assert log.count("is unreachable") == 1, log
            assert log.count("WARNING") == 1, log  # nothing but one warning per outage
            assert "Traceback" not in log


async def test_three_nodes_on_a_redis_cluster() -> None:
    async with (
        redis_cluster() as servers,
        running_cluster(servers[0].url, sharded=True) as (a, b, c),
        sdk_client(a, token=demo_token("alice")) as alice,
        sdk_client(b, token=demo_token("bob")) as bob,
        sdk_client(c, token=demo_token("carol")) as carol,
    ):
        rooms = [f"room-{n}" for n in range(6)]
        for room in rooms:
            await alice.client.subscribe(room)
            await alice.next(Presence, lambda p, room=room: p.channel == room)
        await carol.client.subscribe("room-*")
        await bob.client.subscribe("room-0")
        joined = await alice.next(Presence, lambda p: bool(p.joined))
        assert peers(joined.joined) == ["bob"]
        for room in rooms:
            await bob.client.publish(room, room)
        for n, room in enumerate(rooms):
            assert (await alice.next(Message, skip=n)).data == room
            assert (await carol.next(Message, skip=n)).data == room
        await carol.client.send("bob", "direct over a shard")
        assert (await bob.next(Direct)).data == "direct over a shard"
        assert len(carol.of(Message)) == len(rooms)


async def test_three_nodes_on_two_sharded_redis_servers() -> None:
    # "demo" and "quota" hash to different shards of two: both servers carry an app.
    async with (
        private_redis() as first,
        private_redis() as second,
        running_cluster([first.url, second.url]) as (a, b, c),
        sdk_client(a, token=demo_token("alice")) as alice,
        sdk_client(b, token=demo_token("bob")) as bob,
        sdk_client(c, api_key="pk_quota") as quota_one,
        sdk_client(a, api_key="pk_quota"),
    ):
        await alice.client.subscribe("room")
        await alice.next(Presence)
        await bob.client.subscribe("room")
        assert peers((await bob.next(Presence)).joined) == ["alice"]
        await bob.client.publish("room", "over shards")
        assert (await alice.next(Message)).data == "over shards"
        await alice.client.send("bob", "direct")
        assert (await bob.next(Direct)).data == "direct"
        with pytest.raises(SignallingConnectError) as refused:
            async with sdk_client(b, api_key="pk_quota"):
                pass
        assert refused.value.close_code == 4010
        await quota_one.client.subscribe("x")
        held = [await redis_cli(server.port, "DBSIZE") for server in (first, second)]
        assert all(int(count) > 0 for count in held), held
