"""One listening socket, two HTTP stacks: a protocol factory that reads the first request head
and hands the transport to the lean WebSocket protocol or to aiohttp (prototype).

``loop.create_server(lambda: Sniffer(...))``: each accepted connection starts with a
``Sniffer``, which only buffers bytes until the request head is complete (``\\r\\n\\r\\n``,
bounded). Then:

* ``GET /v1`` (path exactly ``/v1`` or ``/v1?...``) with an ``Upgrade: websocket`` header:
  a ``RawWebSocket`` takes the transport (``transport.set_protocol`` + ``connection_made``)
  and is fed the buffered bytes; it answers the upgrade itself.
* anything else: aiohttp's ``RequestHandler`` from the app's ``web.Server`` (what
  ``AppRunner.server`` builds, the factory ``TCPSite`` would pass to ``create_server``) takes
  the transport the same way. REST, static files, ``/ws`` and WebRTC signalling keep working;
  a later request on a kept-alive connection stays with aiohttp, so ``/v1`` stays registered
  there too (an upgrade after a REST request on the same connection is served by aiohttp).

aiohttp does not need patching: ``RequestHandler`` is an ``asyncio.Protocol`` whose
``connection_made`` / ``data_received`` are the ordinary entry points. Graceful shutdown must
then close both kinds (the runner's ``shutdown`` covers only aiohttp's connections).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from hub import Hub
from raw import RawWebSocket

MAX_HEAD_BYTES = 8192


def wants_lean_upgrade(head: bytes) -> bool:
    if not (head.startswith((b"GET /v1 ", b"GET /v1?"))):
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and value.strip().lower() == b"websocket":
            return True
    return False


class Sniffer(asyncio.Protocol):
    __slots__ = ("_buffer", "_http", "_hub", "_transport")

    def __init__(self, hub: Hub, http: Callable[[], asyncio.Protocol]) -> None:
        self._hub = hub
        self._http = http
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        data = self._buffer + data if self._buffer else data
        end = data.find(b"\r\n\r\n")
        if end < 0 and len(data) <= MAX_HEAD_BYTES:
            self._buffer = data
            return
        transport = self._transport
        assert transport is not None
        self._buffer, self._transport = b"", None
        protocol: asyncio.Protocol
        if end >= 0 and wants_lean_upgrade(data[:end]):
            protocol = RawWebSocket(self._hub)
        else:
            protocol = self._http()  # aiohttp answers whatever it is, even a bad request
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def serve_sniffing(hub: Hub, port: int, announce: Callable[[int], None]) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    http_factory = cast(Any, runner.server)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Sniffer(hub, http_factory), "127.0.0.1", port)
    announce(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()
