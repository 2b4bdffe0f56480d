"""The listening socket, and who serves each connection: the lean ``/v1`` or aiohttp.

Every accepted connection starts with a :class:`FirstRequest` protocol that only buffers the
first request head (bounded, and dropped by a shared handshake wheel if it never completes).
A ``GET /v1`` WebSocket upgrade is then handed to a
:class:`~hubbub.transports.realtime_socket.RealtimeSocket`; anything else (REST, pages,
``/ws``, WebRTC signalling, a plain ``GET /v1`` that gets its 426) to aiohttp's
``RequestHandler``, the protocol ``TCPSite`` would have used, fed the same bytes. A later
request on a kept-alive connection stays with aiohttp, which still serves ``/v1`` too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from hubbub.core.wheel import TimerWheel
from hubbub.protocol.websocket import MAX_HEAD_BYTES
from hubbub.transports.realtime_shared import RealtimeShared, _LoopScheduler
from hubbub.transports.realtime_socket import RealtimeSocket

log = logging.getLogger(__name__)

# A connection must finish its first request head within this long (generous: in a connect
# storm, clients on a busy machine send their head many seconds after the TCP handshake).
HANDSHAKE_TIMEOUT_S = 60.0


def wants_realtime_upgrade(head: bytes) -> bool:
    """``GET /v1`` (or ``/v1?…``) with ``Upgrade: websocket``: the lean transport's."""
    if not head.startswith((b"GET /v1 ", b"GET /v1?")):
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and value.strip().lower() == b"websocket":
            return True
    return False


class FirstRequest(asyncio.Protocol):
    __slots__ = ("_buffer", "_listener", "_slot", "_transport")

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._slot: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        listener = self._listener
        self._slot = listener.handshakes.add(self, listener.loop.time() + listener.head_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
        end = data.find(b"\r\n\r\n")
        if end < 0 and len(data) <= MAX_HEAD_BYTES:
            self._buffer = data
            return
        transport = self._transport
        if transport is None:
            return
        self._forget()
        self._buffer = b""
        protocol: asyncio.BaseProtocol
        if end >= 0 and wants_realtime_upgrade(data[:end]):
            protocol = RealtimeSocket(self._listener.shared)
        else:
            protocol = self._listener.http()  # aiohttp answers whatever it is
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        cast(asyncio.Protocol, protocol).data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def timed_out(self) -> None:
        self._slot = None
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()

    def _forget(self) -> None:
        if self._slot is not None:
            self._listener.handshakes.remove(self, self._slot)
            self._slot = None
        self._transport = None


def _timed_out(first: FirstRequest) -> None:
    first.timed_out()


class Listener:
    """One port for everything; ``start`` binds it, ``close`` stops accepting."""

    def __init__(
        self,
        shared: RealtimeShared,
        http: Callable[[], asyncio.BaseProtocol],
        loop: asyncio.AbstractEventLoop,
        head_timeout_s: float = HANDSHAKE_TIMEOUT_S,
    ) -> None:
        self.shared = shared
        self.http = http
        self.loop = loop
        self.head_timeout_s = head_timeout_s
        self.handshakes: TimerWheel[FirstRequest] = TimerWheel(
            _LoopScheduler(loop), loop.time, 1.0, _timed_out
        )
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, backlog: int) -> int:
        """Listen; returns the bound port (``port`` may be 0)."""
        self._server = await self.loop.create_server(
            lambda: FirstRequest(self), host, port, backlog=backlog
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
