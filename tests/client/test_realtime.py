"""``hubbub.client.realtime`` against real servers: it reconnects and recovers without losing or
duplicating anything, and says ``recovered=False`` when the history is gone.

A "server-side kill" is simulated by a loopback TCP relay between the client and the server
whose connections the test aborts: the server sees its socket drop, the client sees a 1006.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hubbub.client import (
    Connected,
    Direct,
    Disconnected,
    GoingAway,
    Message,
    Presence,
    RealtimeClient,
    RealtimeError,
    Subscribed,
)
from tests.support.redis import SHARED_URL, delete_prefix, free_port, unique_prefix
from tests.support.server import DEMO_APP_TOML, running_server
from tests.support.tokens import mint_token

pytestmark = pytest.mark.integration

HISTORY_TOML = (
    DEMO_APP_TOML
    + """
[server]
shutdown_drain_s = 0.2

[[apps.channels]]
pattern = "**"
history_size = 1000
history_ttl_s = 600
"""
)
KEY = "pk_live_demo"
WAIT_S = 15.0


class Relay:
    """A TCP relay on loopback whose connections can be cut from the test."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links.append((writer, up_writer))

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def cut(self) -> None:
        for down, up in self.links:
            for writer in (down, up):
                writer.transport.abort()
        self.links.clear()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


async def until(client: RealtimeClient, wanted: type[Any], where: Any = lambda e: True) -> Any:
    """Events up to and including the first ``wanted`` one matching ``where``."""
    seen = []
    async with asyncio.timeout(WAIT_S):
        while True:
            event = await client.next_event()
            seen.append(event)
            if isinstance(event, wanted) and where(event):
                return seen


def data_of(events: list[Any], channel: str) -> list[Any]:
    return [e.data for e in events if isinstance(e, Message) and e.channel == channel]


async def collect(client: RealtimeClient, channel: str, count: int) -> list[Message]:
    found: list[Message] = []
    async with asyncio.timeout(WAIT_S):
        while len(found) < count:
            event = await client.next_event()
            if isinstance(event, Message) and event.channel == channel:
                found.append(event)
    return found


@contextlib.asynccontextmanager
async def clients(*made: RealtimeClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for client in made:
            await client.close()


async def test_publish_subscribe_presence_and_directs() -> None:
    async with running_server(HISTORY_TOML) as server:
        token, _ = mint_token("bob")

        async def provide() -> str:
            return token

        alice = await RealtimeClient(server.ws_url, api_key=KEY).connect()
        bob = await RealtimeClient(server.ws_url, token_provider=provide).connect()
        async with clients(alice, bob):
            assert bob.peer_id == "bob"
            first = await bob.subscribe("chat/a")
            assert first.recovered is None and first.offset == 0
            await alice.subscribe("chat/a")
            await until(bob, Presence, lambda e: [j["peerId"] for j in e.joined] == [alice.peer_id])
            assert set(bob.members("chat/a")) == {alice.peer_id}
            published = await alice.publish("chat/a", {"n": 1})
            assert (published.offset, published.duplicate) == (1, False)
            again = await alice.publish("chat/a", {"n": 1}, message_id="fixed")
            repeat = await alice.publish("chat/a", {"n": 1}, message_id="fixed")
            assert repeat.duplicate and repeat.offset == again.offset
            messages = await collect(bob, "chat/a", 2)
            assert [(m.data, m.offset, m.sender) for m in messages] == [
                ({"n": 1}, 1, alice.peer_id),
                ({"n": 1}, 2, alice.peer_id),
            ]
            await alice.send("bob", "psst")
            direct = (await until(bob, Direct))[-1]
            assert (direct.sender, direct.data) == (alice.peer_id, "psst")
            with pytest.raises(RealtimeError) as refused:
                await alice.send("nobody-here", 1)
            assert refused.value.code == "peer_not_found"


async def test_recovers_after_the_server_side_kills_its_socket() -> None:
    async with running_server(HISTORY_TOML) as server:
        relay = Relay(server.port)
        port = await relay.start()
        reader = await RealtimeClient(
            f"ws://127.0.0.1:{port}", api_key=KEY, backoff_initial_s=0.05
        ).connect()
        writer = await RealtimeClient(server.ws_url, api_key=KEY).connect()
        async with clients(reader, writer):
            await reader.subscribe("chat/k")
            for n in range(5):
                await writer.publish("chat/k", n)
            assert [m.data for m in await collect(reader, "chat/k", 5)] == list(range(5))
            relay.cut()
            # Published while the reader is away, and by the reader itself (retried).
            for n in range(5, 10):
                await writer.publish("chat/k", n)
            own = asyncio.create_task(reader.publish("chat/k", "mine"))
            events = await until(reader, Subscribed)
            assert any(isinstance(e, Disconnected) and e.will_reconnect for e in events)
            assert events[-1].recovered is True
            assert (await own).offset == 11
            for n in range(10, 13):
                await writer.publish("chat/k", n)
            # Everyone else's, once each, in order; never its own.
            received = data_of(events, "chat/k") + [
                m.data for m in await collect(reader, "chat/k", 8 - len(data_of(events, "chat/k")))
            ]
            assert received == list(range(5, 13))
            assert reader.reconnects == 1
        await relay.stop()


async def test_recovers_across_a_graceful_restart_of_its_node() -> None:
    prefix = unique_prefix()
    toml = (
        f'[broker]\nkind = "redis"\nurl = "{SHARED_URL}"\nkey_prefix = "{prefix}"\n' + HISTORY_TOML
    )
    try:
        async with running_server(toml) as one, running_server(toml) as two:
            reader = await RealtimeClient(
                [one.ws_url, two.ws_url], api_key=KEY, backoff_initial_s=0.05
            ).connect()
            writer = await RealtimeClient(two.ws_url, api_key=KEY).connect()
            async with clients(reader, writer):
                await reader.subscribe("chat/r")
                publishing = asyncio.create_task(
                    _publish_paced(writer, "chat/r", 60, interval_s=0.01)
                )
                await collect(reader, "chat/r", 10)
                await one.stop(signal.SIGTERM)  # going_away, drain, close 1001
                events = await until(reader, Subscribed)
                assert any(isinstance(e, GoingAway) for e in events)
                assert events[-1].recovered is True
                await publishing
                rest = await collect(reader, "chat/r", 60 - 10 - len(data_of(events, "chat/r")))
                offsets = [m.offset for m in rest]
                assert data_of(events, "chat/r") + [m.data for m in rest] == list(range(10, 60))
                assert offsets == sorted(offsets)
    finally:
        await delete_prefix(6379, prefix)


async def _publish_paced(
    client: RealtimeClient, channel: str, count: int, interval_s: float
) -> None:
    for n in range(count):
        await client.publish(channel, n)
        await asyncio.sleep(interval_s)  # a paced publisher (the rate is the point, not a wait)


async def test_reports_recovered_false_when_the_history_was_lost() -> None:
    port = free_port()
    args = ("--port", str(port))
    url = f"ws://127.0.0.1:{port}"
    reader: RealtimeClient | None = None
    try:
        async with running_server(HISTORY_TOML, extra_args=args):
            reader = await RealtimeClient(url, api_key=KEY, backoff_initial_s=0.05).connect()
            writer = await RealtimeClient(url, api_key=KEY).connect()
            await reader.subscribe("chat/lost")
            await writer.publish("chat/lost", 1)
            await collect(reader, "chat/lost", 1)
            await writer.close()
        # The single node restarts on the same port: its memory history (and epoch) is gone.
        async with running_server(HISTORY_TOML, extra_args=args):
            events = await until(reader, Subscribed)
            assert any(isinstance(e, Connected) and e.reconnected for e in events)
            assert events[-1].recovered is False
            writer = await RealtimeClient(url, api_key=KEY).connect()
            await writer.publish("chat/lost", 2)
            assert [(m.data, m.offset) for m in await collect(reader, "chat/lost", 1)] == [(2, 1)]
            await writer.close()
    finally:
        if reader is not None:
            await reader.close()
