"""The lean /v1 transport over real loopback sockets, byte by byte: one port shared with
aiohttp, the upgrade's refusals, frames in and out, and every close keeping its code (the
lingering close: a peer still sending never gets a reset instead of the close frame).

The server is ``hubbub.server.serve`` in this process on a free port; the clients are plain
asyncio streams speaking RFC 6455 by hand, so nothing here trusts a WebSocket library.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from aiohttp import web

from hubbub.config import Config, parse_config
from hubbub.server import Listening, serve
from hubbub.transports.listener import Listener
from tests.protocol.test_websocket import client_frame
from tests.support.server import DEMO_APP_TOML
from tests.transports.test_realtime_shared import shared_state

WAIT_S = 5.0

CONFIG = """
[server]
port = 0
keepalive_interval_s = {keepalive}
keepalive_timeout_s = {keepalive}
slow_consumer_bytes = {slow}

[limits]
max_message_bytes = 1024
rate_burst = 100000
rate_per_second = 100000
"""


def config(keepalive: float = 30, slow: int = 1_048_576) -> Config:
    return parse_config(CONFIG.format(keepalive=keepalive, slow=slow) + DEMO_APP_TOML, "test.toml")


@asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[int]:
    listening: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(cfg, listening.set_result, stop))
    try:
        port = (await asyncio.wait_for(listening, WAIT_S)).port
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.autopong = False

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame (opcode, payload); server frames are never masked."""
        while True:
            opcode, payload = await self._frame()
            if opcode != 9 or not self.autopong:
                return opcode, payload
            self.send(payload, opcode=10)

    async def _frame(self) -> tuple[int, bytes]:
        async with asyncio.timeout(WAIT_S):
            first, second = await self.reader.readexactly(2)
            assert not second & 0x80
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            return first & 0x0F, await self.reader.readexactly(length)

    async def json(self) -> dict[str, Any]:
        opcode, payload = await self.frame()
        assert opcode == 1, (opcode, payload)
        result: dict[str, Any] = json.loads(payload)
        return result

    async def until_type(self, kind: str) -> dict[str, Any]:
        """The next text frame of this type (pongs and other types skipped)."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 1 and (frame := json.loads(payload))["type"] == kind:
                result: dict[str, Any] = frame
                return result

    async def close_code(self) -> int:
        """Read frames until the close frame; its code."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 8:
                return int.from_bytes(payload[:2], "big")

    def send(self, payload: bytes, opcode: int = 1, **kwargs: Any) -> None:
        self.writer.write(client_frame(opcode, payload, **kwargs))

    def send_json(self, frame: dict[str, Any]) -> None:
        self.send(json.dumps(frame).encode())

    async def eof(self) -> bool:
        async with asyncio.timeout(WAIT_S):
            return await self.reader.read() == b"" or True


async def raw_request(
    port: int, request: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    return reader, writer


def upgrade(target: str = "/v1?key=pk_live_demo", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{extra}\r\n"
    ).encode()


async def open_peer(port: int, target: str = "/v1?key=pk_live_demo") -> tuple[Peer, dict[str, Any]]:
    reader, writer = await raw_request(port, upgrade(target))
    async with asyncio.timeout(WAIT_S):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    peer = Peer(reader, writer)
    return peer, await peer.json()


async def response(port: int, request: bytes) -> bytes:
    reader, writer = await raw_request(port, request)
    async with asyncio.timeout(WAIT_S):
        data = await reader.read()
    writer.close()
    return data


async def test_one_port_serves_rest_through_aiohttp_and_v1_upgrades_through_the_lean_socket() -> (
    None
):
    async with running(config()) as port:
        health = await response(
            port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert health.startswith(b"HTTP/1.1 200 ") and b'"status": "ok"' in health
        missing = await response(
            port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert missing.startswith(b"HTTP/1.1 404 ")
        plain_v1 = await response(port, b"GET /v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert plain_v1.startswith(b"HTTP/1.1 426 ")
        peer, welcome = await open_peer(port)
        assert welcome["type"] == "welcome" and welcome["maxMessageSize"] == 1024
        peer.writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status", "body"),
    [
        (upgrade("/v1?key=pk_live_nope"), b"101", None),  # 101 then close 4001
        (
            upgrade().replace(b"Version: 13", b"Version: 8"),
            b"400",
            b"unsupported websocket version",
        ),
        (
            upgrade().replace(b"Sec-WebSocket-Key: ", b"Sec-WebSocket-Key: x"),
            b"400",
            b"invalid sec-websocket-key",
        ),
    ],
)
async def test_refused_upgrades(request_bytes: bytes, status: bytes, body: bytes | None) -> None:
    async with running(config()) as port:
        reader, writer = await raw_request(port, request_bytes)
        async with asyncio.timeout(WAIT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + status), head
        if body is None:
            peer = Peer(reader, writer)
            assert await peer.close_code() == 4001
            peer.send((1000).to_bytes(2, "big"), opcode=8)
            assert await peer.eof()
        else:
            async with asyncio.timeout(WAIT_S):
                assert (await reader.read()).endswith(body)
        writer.close()


async def test_frames_in_order_ping_pong_and_a_clean_close_echoed() -> None:
    async with running(config()) as port:
        peer, _ = await open_peer(port)
        peer.send(b"hello", opcode=9)
        for i in range(5):
            peer.send_json({"type": "subscribe", "channel": f"c{i}", "requestId": str(i)})
        assert await peer.frame() == (10, b"hello")
        acks = [f["requestId"] for f in [await peer.until_type("ack") for _ in range(5)]]
        assert acks == ["0", "1", "2", "3", "4"]
        peer.send((1000).to_bytes(2, "big") + b"bye", opcode=8)
        assert await peer.close_code() == 1000
        assert await peer.eof()


async def test_a_fragmented_publish_is_reassembled_and_delivered() -> None:
    async with running(config()) as port:
        reader, _ = await open_peer(port)
        reader.send_json({"type": "subscribe", "channel": "room", "requestId": "s"})
        await reader.until_type("ack")
        peer, _ = await open_peer(port)
        text = json.dumps({"type": "publish", "channel": "room", "data": "hi", "requestId": "p"})
        peer.send(text[:10].encode(), fin=False)
        peer.send(b"", opcode=9)
        peer.send(text[10:].encode(), opcode=0)
        assert (await peer.until_type("ack"))["requestId"] == "p"
        message = await reader.until_type("message")
        assert message["data"] == "hi"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"opcode": 1, "payload": b"{}", "masked": False}, 1002),
        ({"opcode": 1, "payload": b"{}", "rsv": 4}, 1002),
        ({"opcode": 0, "payload": b"x"}, 1002),
        ({"opcode": 1, "payload": b"\xff\xfe"}, 1007),
    ],
)
async def test_protocol_violations_close_with_their_code(frame: dict[str, Any], code: int) -> None:
    async with running(config()) as port:
        peer, _ = await open_peer(port)
        peer.writer.write(client_frame(frame.pop("opcode"), frame.pop("payload"), **frame))
        assert await peer.close_code() == code


async def test_an_oversized_message_still_being_sent_gets_its_1009_not_a_reset() -> None:
    async with running(config()) as port:
        peer, _ = await open_peer(port)
        big = client_frame(1, b"x" * 4_000_000)
        peer.writer.write(big)  # the server refuses it from the header; the rest keeps coming
        assert await peer.close_code() == 1009
        peer.send((1009).to_bytes(2, "big"), opcode=8)
        assert await peer.eof()


async def test_a_binary_frame_is_a_malformed_message_error_and_the_connection_stays() -> None:
    async with running(config()) as port:
        peer, _ = await open_peer(port)
        peer.send(b"\x00", opcode=2)
        error = await peer.until_type("error")
        assert error["code"] == "malformed_message"
        peer.send_json({"type": "ping"})
        assert (await peer.until_type("pong"))["type"] == "pong"


async def test_a_silent_peer_is_pinged_then_dropped_and_leaves_presence() -> None:
    async with running(config(keepalive=0.3)) as port:
        member, _ = await open_peer(port)
        member.autopong = True
        member.send_json({"type": "subscribe", "channel": "room", "requestId": "m"})
        await member.until_type("ack")
        silent, welcome = await open_peer(port)
        silent.send_json({"type": "subscribe", "channel": "room", "requestId": "s"})
        await silent.until_type("ack")
        # From here on the silent peer reads nothing and so never answers a ping.
        while not (joined := await member.until_type("presence"))["joined"]:
            pass
        assert [p["peerId"] for p in joined["joined"]] == [welcome["peerId"]]
        left = await member.until_type("presence")
        assert [p["peerId"] for p in left["left"]] == [welcome["peerId"]]
        member.send_json({"type": "ping"})
        await member.until_type("pong")  # the member, answering its pings, is still there


async def test_a_slow_consumer_is_closed_1008_and_released() -> None:
    async with running(config(slow=64 * 1024)) as port:
        watcher, _ = await open_peer(port)
        watcher.send_json({"type": "subscribe", "channel": "room", "requestId": "w"})
        await watcher.until_type("ack")
        slow, welcome = await open_peer(port)
        slow.send_json({"type": "subscribe", "channel": "room", "requestId": "s"})
        await slow.until_type("ack")
        while not (await watcher.until_type("presence"))["joined"]:
            pass

        async def watch() -> dict[str, Any]:
            while True:
                frame = await watcher.json()
                if frame["type"] == "presence" and frame["left"]:
                    return frame

        left = asyncio.create_task(watch())
        publisher, _ = await open_peer(port)
        payload = "y" * 900
        # The slow peer never reads: the kernel's buffers fill, then its queue passes 64 KiB.
        for i in range(20000):  # one at a time (acknowledged), so the watcher keeps up
            if left.done():
                break
            publisher.send_json(
                {"type": "publish", "channel": "room", "data": payload, "requestId": str(i)}
            )
            await publisher.until_type("ack")
        async with asyncio.timeout(WAIT_S):
            frame = await left
        assert [p["peerId"] for p in frame["left"]] == [welcome["peerId"]]
        assert await slow.close_code() == 1008


async def test_a_kept_alive_http_connection_that_upgrades_later_is_served_by_aiohttp() -> None:
    async with running(config()) as port:
        reader, writer = await raw_request(
            port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + upgrade()
        )
        async with asyncio.timeout(WAIT_S):
            first = await reader.readuntil(b"\r\n\r\n")
            assert first.startswith(b"HTTP/1.1 200 ")
            length = int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            second = await reader.readuntil(b"\r\n\r\n")
        assert second.startswith(b"HTTP/1.1 101 ")  # aiohttp's /v1 endpoint, same protocol
        peer = Peer(reader, writer)
        assert (await peer.json())["type"] == "welcome"
        writer.close()


async def test_a_connection_that_never_sends_a_request_head_is_dropped() -> None:
    shared = await shared_state()
    runner = web.AppRunner(web.Application())
    await runner.setup()
    assert runner.server is not None
    listener = Listener(shared, runner.server, asyncio.get_running_loop(), head_timeout_s=0.5)
    port = await listener.start("127.0.0.1", 0, 16)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n")  # never finished
        async with asyncio.timeout(WAIT_S):  # dropped (aborted) by the handshake wheel
            with suppress(ConnectionResetError):
                assert await reader.read() == b""
        writer.close()
    finally:
        await listener.close()
        await runner.cleanup()
