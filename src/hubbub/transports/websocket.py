"""The realtime WebSocket endpoint (``GET /v1``) on aiohttp.

Outbound frames bypass aiohttp's per-message ``send_str``: a server frame is unmasked, so its
WebSocket framing is identical for every recipient. :class:`WebSocketOutbox` takes the frame
bytes built once per fan-out (:meth:`OutFrame.wire`) and writes them straight to the socket's
transport; frames queued for one connection in the same loop iteration are coalesced into one
write. A connection whose unsent bytes pass the high-water mark is closed as a slow consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from hubbub.auth.client_ip import TrustedProxies, client_ip
from hubbub.auth.connect import CloseRejection, HttpRejection, authenticate
from hubbub.auth.keys import KeyRing
from hubbub.core.connection import Connection
from hubbub.core.node import Node
from hubbub.core.outbound import OutFrame
from hubbub.core.ratelimit import KeyedRateLimiter
from hubbub.protocol.codes import SLOW_CONSUMER_REASON, CloseCode

log = logging.getLogger(__name__)

# Slack over max_message_bytes for the JSON envelope around a payload the SDK measured alone
# (spec section 8.1, "size subtlety").
ENVELOPE_SLACK_BYTES = 1024


def encode_text_frame(payload: bytes) -> bytes:
    """An unmasked, final, text WebSocket frame (RFC 6455 section 5.2)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 65536:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


class _Flusher:
    """Writes every outbox that got frames during this loop iteration, once, at its end."""

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[WebSocketOutbox] = []
        self._scheduled = False

    def mark(self, outbox: WebSocketOutbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.flush()


class WebSocketOutbox:
    """One connection's outbound FIFO (implements :class:`~hubbub.core.outbound.ConnectionSink`)."""

    __slots__ = (
        "_closing",
        "_dirty",
        "_flusher",
        "_loop",
        "_max_pending_bytes",
        "_pause_handle",
        "_pause_s",
        "_queue",
        "_queued_bytes",
        "_segments",
        "_transport",
        "_ws",
        "closed",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        flusher: _Flusher,
        loop: asyncio.AbstractEventLoop,
        *,
        max_pending_bytes: int,
        pause_s: float,
    ) -> None:
        self._ws = ws
        self._transport = transport
        self._flusher = flusher
        self._loop = loop
        self._max_pending_bytes = max_pending_bytes
        self._pause_s = pause_s
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        # Frames behind pause points: each segment is written one pause after the previous.
        self._segments: deque[list[bytes]] = deque()
        self._pause_handle: asyncio.TimerHandle | None = None
        self._dirty = False
        self._closing = False
        self.closed = loop.create_future()

    def push(self, frame: OutFrame) -> None:
        if self._closing:
            return
        data = frame.wire(encode_text_frame)
        self._queued_bytes += len(data)
        if self._segments:
            self._segments[-1].append(data)
        else:
            self._queue.append(data)
            if not self._dirty:
                self._dirty = True
                self._flusher.mark(self)
        if self._max_pending_bytes and self._queued_bytes > self._max_pending_bytes:
            self._slow_consumer()

    def push_after_pause(self, frame: OutFrame) -> None:
        if self._closing:
            return
        data = frame.wire(encode_text_frame)
        self._queued_bytes += len(data)
        self._segments.append([data])
        if self._pause_handle is None:
            self._pause_handle = self._loop.call_later(self._pause_s, self._resume)

    def _resume(self) -> None:
        self._pause_handle = None
        if self._closing or not self._segments:
            return
        self._queue.extend(self._segments.popleft())
        if not self._dirty:
            self._dirty = True
            self._flusher.mark(self)
        if self._segments:
            self._pause_handle = self._loop.call_later(self._pause_s, self._resume)

    def flush(self) -> None:
        self._dirty = False
        queue = self._queue
        if not queue:
            return
        data = queue[0] if len(queue) == 1 else b"".join(queue)
        queue.clear()
        self._queued_bytes -= len(data)
        if self._transport.is_closing():
            return
        self._transport.write(data)
        if (
            self._max_pending_bytes
            and self._transport.get_write_buffer_size() > self._max_pending_bytes
        ):
            self._slow_consumer()

    def _slow_consumer(self) -> None:
        log.info("closing a slow consumer (%d bytes pending)", self._queued_bytes)
        self._queue.clear()
        self._segments.clear()
        self._queued_bytes = 0
        self.close(CloseCode.POLICY_VIOLATION, SLOW_CONSUMER_REASON)

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if self._pause_handle is not None:
            self._pause_handle.cancel()
            self._pause_handle = None
        while self._segments:
            self._queue.extend(self._segments.popleft())
        self.flush()
        task = self._loop.create_task(self._ws.close(code=code, message=reason.encode()))
        task.add_done_callback(self._on_closed)

    def _on_closed(self, task: asyncio.Task[bool]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.debug("websocket close failed: %s", task.exception())
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    max_message_bytes: int
    slow_consumer_bytes: int
    snapshot_delay_s: float
    keepalive_interval_s: float
    keepalive_timeout_s: float
    connect_attempts_per_ip: int
    connect_window_s: float


class RealtimeEndpoint:
    """Handles ``GET /v1?key=…`` and ``GET /v1?token=…`` upgrades."""

    def __init__(
        self,
        node: Node,
        keys: KeyRing,
        settings: WebSocketSettings,
        trusted_proxies: TrustedProxies,
    ) -> None:
        self._node = node
        self._keys = keys
        self._settings = settings
        self._trusted = trusted_proxies
        attempts = settings.connect_attempts_per_ip
        self._ip_limiter = KeyedRateLimiter(attempts, attempts / settings.connect_window_s)
        self._flusher: _Flusher | None = None
        self._handlers: set[asyncio.Task[object]] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), self._trusted)
        if not self._ip_limiter.allow(ip, time.monotonic()):
            return web.Response(status=429, text="too_many_connections")
        outcome = authenticate(
            self._keys,
            request.query.get("key"),
            request.query.get("token"),
            request.headers.get("Origin"),
            time.time(),
        )
        if isinstance(outcome, HttpRejection):
            return web.Response(status=outcome.status, text=outcome.body)
        settings = self._settings
        max_frame = settings.max_message_bytes
        ws = web.WebSocketResponse(
            max_msg_size=max_frame + ENVELOPE_SLACK_BYTES if max_frame else 0,
            compress=False,
            heartbeat=settings.keepalive_interval_s,
        )
        # aiohttp waits heartbeat/2 for the pong; the protocol promises a fixed grace instead.
        ws._pong_heartbeat = settings.keepalive_timeout_s
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text="websocket upgrade required")
        await ws.prepare(request)
        if isinstance(outcome, CloseRejection):
            await ws.close(code=outcome.code, message=outcome.reason.encode())
            return ws
        transport = request.transport
        if transport is None:
            return ws
        loop = asyncio.get_running_loop()
        if self._flusher is None:
            self._flusher = _Flusher(loop)
        outbox = WebSocketOutbox(
            ws,
            transport,
            self._flusher,
            loop,
            max_pending_bytes=settings.slow_consumer_bytes,
            pause_s=settings.snapshot_delay_s,
        )
        conn = await self._node.open_connection(outcome, outbox)
        if conn is None:
            await outbox.closed
            return ws
        await self._serve(ws, conn)
        return ws

    async def _serve(self, ws: web.WebSocketResponse, conn: Connection) -> None:
        node = self._node
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await node.handle_frame(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await node.handle_binary_frame(conn)
        finally:
            await node.close_connection(conn)
