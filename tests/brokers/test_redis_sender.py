"""The ordered command path (OrderedSender) against real Redis servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from redis.asyncio import RedisCluster
from redis.asyncio.connection import Connection

from hubbub.brokers.redis_sender import OrderedSender, stop_task
from hubbub.core.broker import BrokerUnavailable
from tests.support.redis import private_redis, redis_cli, redis_cluster, unique_prefix

pytestmark = pytest.mark.integration

EVENT_TIMEOUT_S = 5.0


@dataclass
class OutageCounts:
    failures: int = 0
    successes: int = 0

    def note_failure(self, exc: BaseException) -> None:
        self.failures += 1

    def note_success(self) -> None:
        self.successes += 1


def connecting_to(port: int) -> Connection:
    return Connection(host="127.0.0.1", port=port, socket_connect_timeout=2)


@asynccontextmanager
async def sender_for(
    port: int, listener: OutageCounts, **options: float
) -> AsyncIterator[OrderedSender]:
    sender = OrderedSender(lambda: connecting_to(port), listener, **options)  # type: ignore[arg-type]
    try:
        yield sender
    finally:
        await sender.stop()


async def test_many_commands_in_flight_are_answered_in_order() -> None:
    async with private_redis() as redis, sender_for(redis.port, OutageCounts()) as sender:
        key = unique_prefix()
        # Issued in one go: several batches, never waiting for an answer before writing.
        answers = [sender.call("INCR", key) for _ in range(500)]
        await asyncio.sleep(0)
        answers += [sender.call("INCR", key) for _ in range(500)]
        assert await asyncio.gather(*answers) == list(range(1, 1001))
        refused = sender.call("HGET", key, "field")  # a string is not a hash: WRONGTYPE
        after = sender.call("GET", key)
        with pytest.raises(BrokerUnavailable, match="WRONGTYPE"):
            await refused
        assert await after == b"1000"  # a refusal does not disturb what follows


async def test_a_command_is_written_within_the_loop_turn_it_was_issued_in() -> None:
    async with private_redis() as redis, sender_for(redis.port, OutageCounts()) as sender:
        await sender.call("PING")  # connected
        channel = unique_prefix()
        with socket.create_connection(("127.0.0.1", redis.port), timeout=EVENT_TIMEOUT_S) as sub:
            sub.sendall(f"SUBSCRIBE {channel}\r\n".encode())
            assert b"subscribe" in sub.recv(4096)
            published = sender.call("PUBLISH", channel, "now")
            await asyncio.sleep(0)  # one loop turn, then the loop is blocked on purpose:
            # a fan-out that follows the publish must find the command already written.
            assert b"now" in sub.recv(4096)
            assert await published == 1


async def test_commands_in_flight_fail_when_redis_dies_and_the_next_call_reconnects() -> None:
    listener = OutageCounts()
    async with private_redis() as redis, sender_for(redis.port, listener) as sender:
        await redis.stop()
        await redis.start("--enable-debug-command", "yes")
        await sender.call("PING")
        sleeping = sender.call("DEBUG", "SLEEP", "5")
        behind = sender.call("PING")
        await redis.stop()  # kill -9 with both unanswered
        for future in (sleeping, behind):
            with pytest.raises(BrokerUnavailable):
                await asyncio.wait_for(future, EVENT_TIMEOUT_S)
        assert listener.failures >= 1
        with pytest.raises(BrokerUnavailable):
            await sender.call("PING")  # nothing listens: refused at once
        await redis.start()
        assert await sender.call("PING") == b"PONG"


async def test_a_silent_redis_fails_the_commands_after_the_timeout() -> None:
    listener = OutageCounts()
    async with private_redis() as redis:
        await redis.stop()
        await redis.start("--enable-debug-command", "yes")
        async with sender_for(redis.port, listener, command_timeout_s=0.3) as sender:
            await sender.call("PING")
            sleeping = sender.call("DEBUG", "SLEEP", "1")
            began = asyncio.get_running_loop().time()
            with pytest.raises(BrokerUnavailable, match=r"no answer from redis in 0\.3 s"):
                await asyncio.wait_for(sleeping, EVENT_TIMEOUT_S)
            assert asyncio.get_running_loop().time() - began < 0.9
            assert listener.failures == 1
            assert "PONG" in await redis_cli(redis.port, "PING")  # answered after the sleep
            # The next command opens a fresh connection.
            assert await asyncio.wait_for(sender.call("PING"), EVENT_TIMEOUT_S) == b"PONG"


async def test_an_idle_connection_closed_by_redis_is_replaced_without_an_outage() -> None:
    listener = OutageCounts()
    async with private_redis() as redis, sender_for(redis.port, listener) as sender:
        await sender.call("PING")
        assert "1" in await redis_cli(redis.port, "CLIENT", "KILL", "TYPE", "normal")
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while sender.connected:
                await asyncio.sleep(0.01)  # the reader sees the close: poll, bounded above
        assert await sender.call("PING") == b"PONG"
        assert listener.failures == 0


async def test_a_moved_answer_is_followed_through_the_cluster_client() -> None:
    async with redis_cluster() as servers:
        client = RedisCluster.from_url(servers[0].url)
        try:
            await client.initialize()
            prefix = unique_prefix()
            key = next(
                f"{prefix}:{n}"
                for n in range(1000)
                if client.get_node_from_key(f"{prefix}:{n}").port != servers[0].port
            )
            listener = OutageCounts()
            # A sender for the wrong primary: it answers MOVED, the cluster client follows.
            sender = OrderedSender(
                lambda: connecting_to(servers[0].port),
                listener,
                redirect=lambda command: client.execute_command(*command),
            )
            try:
                assert await sender.call("SET", key, "moved") in (True, b"OK")
                assert await client.get(key) == b"moved"
                assert listener.failures == 0
            finally:
                await sender.stop()
        finally:
            await client.aclose()


async def test_stop_task_ends_a_loop_that_swallowed_a_cancellation() -> None:
    # What redis-py does to a cancellation landing inside some commands: the command just
    # completes. A loop around such a command survives one cancel.
    swallowed = 0

    async def loop_around_a_command() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = asyncio.get_running_loop().create_task(loop_around_a_command())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task), EVENT_TIMEOUT_S)
    assert task.cancelled() and swallowed == 1
