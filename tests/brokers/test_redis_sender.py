"""The ordered command path (OrderedSender) against real Redis servers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import RedisCluster
from redis.asyncio.connection import Connection

from hubbub.brokers.redis_link import RedisLink
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


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while not condition():
            await asyncio.sleep(0.01)  # the sender's state changes on its own: poll, bounded


async def test_a_silent_redis_stalls_the_sender_until_its_connection_answers_again() -> None:
    listener = OutageCounts()
    async with private_redis() as redis:
        await redis.stop()
        await redis.start("--enable-debug-command", "yes")
        async with sender_for(redis.port, listener, command_timeout_s=0.3) as sender:
            key = unique_prefix()
            await sender.call("PING")
            sleeping = sender.call("DEBUG", "SLEEP", "1.5")
            behind = sender.call("RPUSH", key, "written before the timeout")
            began = asyncio.get_running_loop().time()
            with pytest.raises(BrokerUnavailable, match=r"no answer from redis in 0\.3 s"):
                await asyncio.wait_for(sleeping, EVENT_TIMEOUT_S)
            with pytest.raises(BrokerUnavailable):
                await behind  # not confirmed, though Redis will still run it
            assert asyncio.get_running_loop().time() - began < 0.9
            # While stalled, a command fails at once and is not written.
            refused = sender.call("RPUSH", key, "issued while stalled")
            assert refused.done()
            with pytest.raises(BrokerUnavailable):
                await refused
            assert listener.failures == 1 and sender.stalled
            # The kept connection's first answer (after the sleep) ends the stall, and what
            # is written now runs after everything the stalled connection carried.
            await until(lambda: not sender.stalled)
            assert await sender.call("RPUSH", key, "after") == 2
            assert await sender.call("LRANGE", key, "0", "-1") == [
                b"written before the timeout",
                b"after",
            ]
            assert listener.failures == 1


async def test_a_hung_redis_bounds_the_handshake_and_the_sender_revives_on_resume() -> None:
    listener = OutageCounts()
    async with private_redis() as redis:
        assert redis.process is not None
        async with sender_for(redis.port, listener, command_timeout_s=0.3) as sender:
            redis.process.send_signal(signal.SIGSTOP)
            try:
                # No connection yet: the handshake itself goes unanswered, within the timeout.
                with pytest.raises(BrokerUnavailable):
                    await asyncio.wait_for(sender.call("PING"), EVENT_TIMEOUT_S)
                refused = sender.call("PING")
                assert refused.done()  # failed at once
                with pytest.raises(BrokerUnavailable):
                    await refused
                assert sender.stalled
            finally:
                redis.process.send_signal(signal.SIGCONT)
            resumed = asyncio.get_running_loop().time()
            await until(lambda: not sender.stalled)
            assert asyncio.get_running_loop().time() - resumed < 1.0
            assert await sender.call("PING") == b"PONG"


async def test_an_idle_sender_suspected_hung_stalls_until_its_ping_is_answered() -> None:
    listener = OutageCounts()
    async with private_redis() as redis, sender_for(redis.port, listener) as sender:
        assert redis.process is not None
        await sender.call("PING")
        redis.process.send_signal(signal.SIGSTOP)
        try:
            sender.suspect_hung(TimeoutError("a heartbeat timed out"))
            assert sender.stalled
            refused = sender.call("PING")
            assert refused.done()  # no 5 s wait for its own timeout
            with pytest.raises(BrokerUnavailable):
                await refused
        finally:
            redis.process.send_signal(signal.SIGCONT)
        await until(lambda: not sender.stalled)
        assert await sender.call("PING") == b"PONG"
        # A busy sender is left to its own watchdog: nothing in flight is failed.
        answer = sender.call("PING")
        sender.suspect_hung(TimeoutError("a slow command elsewhere"))
        assert not sender.stalled
        assert await answer == b"PONG"


@dataclass
class Relay:
    """A TCP relay to a Redis port. :meth:`freeze` turns the connections open so far into
    black holes (open, carrying nothing, as when Redis was replaced behind the address);
    connections made later relay as usual."""

    port: int = 0
    frozen: list[asyncio.Task[None]] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def freeze(self) -> None:
        for task in self.frozen:
            task.cancel()
        self.frozen.clear()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@asynccontextmanager
async def relay_to(redis_port: int) -> AsyncIterator[Relay]:
    relay = Relay()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", redis_port)
        relay.writers += [client_w, server_w]
        loop = asyncio.get_running_loop()
        relay.frozen += [
            loop.create_task(_pipe(client_r, server_w)),
            loop.create_task(_pipe(server_r, client_w)),
        ]

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    try:
        yield relay
    finally:
        relay.freeze()
        for writer in relay.writers:
            writer.close()
        server.close()


async def test_a_stalled_connection_silent_past_give_up_is_replaced_by_a_fresh_one() -> None:
    listener = OutageCounts()
    async with private_redis() as redis, relay_to(redis.port) as relay:
        options = {"command_timeout_s": 0.3, "give_up_s": 0.5}
        async with sender_for(relay.port, listener, **options) as sender:
            assert await sender.call("PING") == b"PONG"
            relay.freeze()
            with pytest.raises(BrokerUnavailable):
                await asyncio.wait_for(sender.call("PING"), EVENT_TIMEOUT_S)
            assert sender.stalled
            began = asyncio.get_running_loop().time()
            await until(lambda: not sender.stalled)  # through a fresh connection
            assert 0.4 < asyncio.get_running_loop().time() - began < 2.0
            assert await sender.call("PING") == b"PONG"


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


async def test_a_timed_out_command_elsewhere_on_the_link_stalls_its_idle_sender() -> None:
    async with private_redis() as redis:
        assert redis.process is not None
        link = RedisLink(redis.url)
        try:
            assert await link.call("PING", "any") == b"any"  # the ordered path is idle
            redis.process.send_signal(signal.SIGSTOP)
            try:
                # What the liveness heartbeat reports when its pooled command times out.
                link.note_failure(redis_errors.TimeoutError("Timeout reading from redis"))
                refused = link.call("PING", "any")
                assert refused.done()
                with pytest.raises(BrokerUnavailable):
                    await refused
            finally:
                redis.process.send_signal(signal.SIGCONT)
            resumed = asyncio.get_running_loop().time()
            async with asyncio.timeout(EVENT_TIMEOUT_S):
                while True:  # refused at once until the stall's PING is answered
                    with contextlib.suppress(BrokerUnavailable):
                        assert await link.call("PING", "any") == b"any"
                        break
                    await asyncio.sleep(0.01)  # poll, bounded above
            assert asyncio.get_running_loop().time() - resumed < 1.0
        finally:
            await link.stop()
