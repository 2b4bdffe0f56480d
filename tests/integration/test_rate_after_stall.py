"""The message-rate limit and a server that stopped reading (docs/benchmarks.md, "Bad link").

A real node on a private Redis that the test pauses with SIGSTOP: each publish waits for
Redis, so the node stops reading the publisher's socket until Redis answers. An honest client
publishing below the rate throughout piles frames up in its socket meanwhile; when Redis is
back they are read at once. Before the fix that backlog emptied the bucket and the honest
client was closed 4011; now the stall is excused (``TokenBucket.excuse``). A flooder in the
same pause is still closed 4011. Both ``/v1`` transports: the lean socket, and aiohttp (an
upgrade on a kept-alive HTTP connection).

Limits: burst 10, 5 frames/s. Honest: 4 publishes/s for 7 s, Redis paused from 1 s to 5 s
(16 frames piled up, more than the burst). Flooder: 15 publishes/s during the pause (60).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from hubbub.config import parse_config
from hubbub.server import Listening, serve
from tests.protocol.test_websocket import client_frame
from tests.support.raw_ws import read_frame
from tests.support.redis import PrivateRedis, private_redis
from tests.support.server import DEMO_APP_TOML
from tests.transports.test_realtime_socket import raw_request, upgrade

pytestmark = pytest.mark.integration

PAUSE_S = 4.0
WAIT_S = 15.0

CONFIG = """
[server]
port = 0
connect_attempts_per_ip = 0

[limits]
rate_burst = 10
rate_per_second = 5

[broker]
kind = "redis"
url = "{url}"
key_prefix = "stall"
"""


@contextlib.asynccontextmanager
async def node_on(redis: PrivateRedis) -> AsyncIterator[int]:
    cfg = parse_config(CONFIG.format(url=redis.url) + DEMO_APP_TOML, "test.toml")
    listening: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(cfg, listening.set_result, stop))
    try:
        yield (await asyncio.wait_for(listening, WAIT_S)).port
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


@dataclass(eq=False)
class Publisher:
    """A raw /v1 client that publishes and tallies its answers and close code."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    answers: dict[str, str] = field(default_factory=dict)  # requestId -> ack / error code
    close_code: int | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # set at every answer
    sent: int = 0

    @classmethod
    async def connect(cls, port: int, via_aiohttp: bool) -> Publisher:
        # aiohttp serves /v1 when the upgrade follows a request on a kept-alive connection.
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" if via_aiohttp else b""
        reader, writer = await raw_request(port, head + upgrade())
        async with asyncio.timeout(WAIT_S):
            if via_aiohttp:
                first = await reader.readuntil(b"\r\n\r\n")
                assert first.startswith(b"HTTP/1.1 200 "), first
                await reader.readexactly(int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
            response = await reader.readuntil(b"\r\n\r\n")
            assert response.startswith(b"HTTP/1.1 101 "), response
            client = cls(reader, writer)
            assert (await read_frame(client.reader))[1].startswith(b'{"type":"welcome"')
        return client

    async def read(self) -> None:
        try:
            while True:
                opcode, payload = await read_frame(self.reader)
                if opcode == 8:
                    self.close_code = int.from_bytes(payload[:2], "big")
                    return
                if opcode == 1:
                    frame: dict[str, Any] = json.loads(payload)
                    if "requestId" in frame:
                        self.answers[frame["requestId"]] = (
                            "ack" if frame["type"] == "ack" else frame["code"]
                        )
                        self.answered.set()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return
        finally:
            self.ended.set()
            self.answered.set()

    def publish(self) -> None:
        if self.writer.is_closing():
            return
        frame = {
            "type": "publish",
            "channel": "room",
            "data": self.sent,
            "requestId": str(self.sent),
        }
        self.writer.write(client_frame(1, json.dumps(frame).encode()))
        self.sent += 1


async def at_rate(publisher: Publisher, per_s: float, duration_s: float) -> None:
    start = time.monotonic()
    for i in range(round(per_s * duration_s)):
        publisher.publish()
        await asyncio.sleep(max(0.0, start + (i + 1) / per_s - time.monotonic()))  # pacing


@pytest.mark.parametrize("via_aiohttp", [False, True], ids=["lean", "aiohttp"])
async def test_an_honest_publisher_outlives_a_redis_stall_and_a_flooder_does_not(
    via_aiohttp: bool,
) -> None:
    async with private_redis() as redis, node_on(redis) as port:
        honest = await Publisher.connect(port, via_aiohttp)
        flooder = await Publisher.connect(port, via_aiohttp)
        readers = [asyncio.create_task(p.read()) for p in (honest, flooder)]
        assert redis.process is not None

        async def pause_redis() -> None:
            await asyncio.sleep(1.0)  # pacing: the honest publisher's first second
            assert redis.process is not None
            redis.process.send_signal(signal.SIGSTOP)
            try:
                await at_rate(flooder, 15, PAUSE_S)  # three times the rate, into the pause
            finally:
                redis.process.send_signal(signal.SIGCONT)

        try:
            await asyncio.gather(at_rate(honest, 4, 7.0), pause_redis())
            async with asyncio.timeout(WAIT_S):
                while len(honest.answers) < honest.sent and not honest.ended.is_set():
                    honest.answered.clear()
                    await honest.answered.wait()
                await flooder.ended.wait()
        finally:
            redis.process.send_signal(signal.SIGCONT)
            for task in readers:
                task.cancel()
            for publisher in (honest, flooder):
                publisher.writer.close()
        assert honest.close_code is None and not honest.ended.is_set()
        assert honest.answers == {str(i): "ack" for i in range(28)}
        assert flooder.close_code == 4011
        # The flooder's stall excused 5/s x ~4 s over its full bucket: about 30 answered.
        assert 10 < len(flooder.answers) < 40, len(flooder.answers)
