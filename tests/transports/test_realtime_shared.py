"""The lean socket's write path and coroutine driving, on a real event loop and a real node
(memory broker), with a recording transport in place of the socket: direct writes, coalescing
within one loop iteration, burst mode, backpressure, and inline vs task handling."""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from hubbub.auth.client_ip import TrustedProxies
from hubbub.config import key_ring_of, parse_config
from hubbub.core.outbound import OutFrame
from hubbub.core.ratelimit import KeyedRateLimiter
from hubbub.server import build_node
from hubbub.transports.realtime_shared import BURST_HOLD_S, RealtimeSettings, RealtimeShared
from hubbub.transports.realtime_socket import RealtimeSocket
from tests.protocol.test_websocket import client_frame
from tests.support.server import DEMO_APP_TOML

CONFIG = parse_config(DEMO_APP_TOML, "test.toml")


@dataclass
class RecordingTransport:
    writes: list[bytes] = field(default_factory=list)
    buffered: int = 0
    closed: bool = False
    aborted: bool = False
    reading: bool = True
    eof_written: bool = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def abort(self) -> None:
        self.aborted = True


def settings(slow: int = 1 << 20, inline: bool = True) -> RealtimeSettings:
    return RealtimeSettings(
        max_message_bytes=65536 + 1024,
        slow_consumer_bytes=slow,
        snapshot_delay_s=0.002,
        keepalive_interval_s=30,
        keepalive_timeout_s=10,
        inline=inline,
    )


async def shared_state(**kwargs: Any) -> RealtimeShared:
    node = build_node(CONFIG)
    await node.start()
    return RealtimeShared(
        node,
        key_ring_of(CONFIG),
        settings(**kwargs),
        TrustedProxies([]),
        KeyedRateLimiter(0, 1),
        None,
        asyncio.get_running_loop(),
    )


async def opened(shared: RealtimeShared) -> tuple[RealtimeSocket, RecordingTransport]:
    socket, transport = RealtimeSocket(shared), RecordingTransport()
    socket.connection_made(transport)  # type: ignore[arg-type]
    key = base64.b64encode(os.urandom(16)).decode()
    socket.data_received(
        (
            "GET /v1?key=pk_live_demo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        ).encode()
    )
    await asyncio.sleep(0)  # the 101 and the welcome leave together at the iteration's end
    if shared.settings.inline:
        assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 101 ")
    async with asyncio.timeout(2):  # opened in a task: the welcome comes a little later
        while b'"type":"welcome"' not in b"".join(transport.writes):
            await asyncio.sleep(0.001)
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 101 ")
    transport.writes.clear()
    return socket, transport


def frame(text: str) -> OutFrame:
    return OutFrame(text.encode())


async def next_iteration() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_lone_frame_is_written_at_once_and_more_in_the_same_iteration_coalesce() -> None:
    shared = await shared_state()
    socket, transport = await opened(shared)
    await next_iteration()
    socket.push(frame("a"))
    assert transport.writes == [b"\x81\x01a"]  # straight to the transport, nothing scheduled
    socket.push(frame("b"))
    socket.push(frame("c"))
    assert len(transport.writes) == 1
    await asyncio.sleep(0)
    assert transport.writes == [b"\x81\x01a", b"\x81\x01b\x81\x01c"]


async def test_after_an_iteration_that_coalesced_the_next_one_queues_from_its_first_frame() -> None:
    shared = await shared_state()
    socket, transport = await opened(shared)
    await next_iteration()
    socket.push(frame("a"))
    socket.push(frame("b"))  # coalesced: a burst
    await asyncio.sleep(0)
    transport.writes.clear()
    socket.push(frame("c"))
    socket.push(frame("d"))
    assert transport.writes == []  # burst mode: one write per connection per iteration
    await asyncio.sleep(0)
    assert transport.writes == [b"\x81\x01c\x81\x01d"]
    transport.writes.clear()
    socket.push(frame("e"))  # still in burst mode: queued
    assert transport.writes == []
    await asyncio.sleep(0)
    assert transport.writes == [b"\x81\x01e"]
    transport.writes.clear()
    async with asyncio.timeout(1):  # BURST_HOLD_S without coalescing ends burst mode
        while shared.flusher.queueing:
            await asyncio.sleep(BURST_HOLD_S / 4)
    socket.push(frame("f"))
    assert transport.writes == [b"\x81\x01f"]


async def test_while_the_transport_is_paused_frames_queue_and_resume_writes_them_in_order() -> None:
    shared = await shared_state()
    socket, transport = await opened(shared)
    socket.pause_writing()
    for text in "xyz":
        socket.push(frame(text))
    await next_iteration()
    assert transport.writes == []
    socket.resume_writing()
    assert transport.writes == [b"\x81\x01x\x81\x01y\x81\x01z"]


async def test_a_slow_consumer_gets_1008_and_nothing_more() -> None:
    shared = await shared_state(slow=1000)
    socket, transport = await opened(shared)
    socket.pause_writing()
    transport.buffered = 900
    socket.push(frame("a" * 50))
    assert not transport.writes
    socket.push(frame("b" * 60))  # 900 buffered + 114 queued > 1000
    assert transport.writes[-1] == b"\x88\x0f\x03\xf0slow consumer"
    assert transport.eof_written  # half-closed after the close frame
    assert shared.node.connection_count == 1
    await asyncio.sleep(0)
    assert shared.node.connection_count == 0  # released when the close started
    socket.push(frame("c"))
    socket.resume_writing()
    assert transport.writes[-1] == b"\x88\x0f\x03\xf0slow consumer"


async def test_a_close_frame_from_the_peer_is_echoed_and_the_connection_released() -> None:
    shared = await shared_state()
    socket, transport = await opened(shared)
    socket.data_received(client_frame(8, (1001).to_bytes(2, "big")))
    assert transport.writes == [b"\x88\x02\x03\xe9"] and transport.closed
    await asyncio.sleep(0)
    assert shared.node.connection_count == 0


async def _suspending(gate: asyncio.Future[int]) -> tuple[int, bool]:
    value = await gate
    return value, asyncio.current_task() is not None


@pytest.mark.parametrize("inline", [True, False])
async def test_drive_runs_inline_until_the_coroutine_suspends(inline: bool) -> None:
    shared = await shared_state(inline=inline)
    results: list[object] = []

    async def quick() -> str:
        return "now"

    task = shared.drive(quick(), results.append, lambda: results.append("failed"))
    if inline:
        assert task is None and results == ["now"]
    else:
        assert task is not None and results == []
        await task
        assert results == ["now"]
    results.clear()
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = shared.drive(_suspending(gate), results.append, lambda: results.append("failed"))
    assert task is not None and results == []
    gate.set_result(7)
    await task
    assert results == [(7, True)]  # resumed inside a task: asyncio.timeout would work there


async def test_drive_reports_a_failure_inline_and_in_a_task() -> None:
    shared = await shared_state()
    failures: list[str] = []

    async def broken() -> None:
        raise ValueError("boom")

    assert shared.drive(broken(), print, lambda: failures.append("inline")) is None
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def broken_later() -> None:
        await gate
        raise ValueError("boom")

    task = shared.drive(broken_later(), print, lambda: failures.append("task"))
    assert task is not None
    gate.set_result(None)
    with pytest.raises(ValueError):
        await task
    assert failures == ["inline", "task"]


async def test_frames_keep_their_order_when_one_suspends() -> None:
    """A frame whose handling suspends pauses reading; the next frames wait for it."""
    shared = await shared_state(inline=False)  # every frame in a task, as with Redis
    socket, transport = await opened(shared)
    frames = b"".join(
        client_frame(1, f'{{"type":"subscribe","channel":"c{i}","requestId":"{i}"}}'.encode())
        for i in range(4)
    )
    socket.data_received(frames)
    assert not transport.reading
    async with asyncio.timeout(2):
        while b'"requestId":"3"' not in b"".join(transport.writes):
            await asyncio.sleep(0.001)
    written = b"".join(transport.writes)
    positions = [written.index(f'"requestId":"{i}"'.encode()) for i in range(4)]
    assert positions == sorted(positions)
    assert transport.reading
