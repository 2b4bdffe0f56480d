"""Candidate WebSocket layers for a lean ``/v1``, each serving bench/lean/hub.py's fan-out.

    python bench/lean/server.py IMPL [port]       (prints "listening on PORT")

IMPL is one of

* ``aiohttp``: as Hubbub serves ``/v1`` today: ``WebSocketResponse`` (heartbeat 30 s, no
  compression), one handler coroutine per connection reading ``async for msg in ws``;
  outgoing frames written to the request's transport.
* ``websockets``: a plain ``asyncio.Protocol`` driving the ``websockets`` sans-I/O
  ``ServerProtocol`` (handshake, frame parsing, automatic pong, close).
* ``wsproto``: the same with ``wsproto.WSConnection``.
* ``raw``: a hand-rolled RFC 6455 server protocol (``raw.py``): handshake, unmasking,
  fragmentation, ping/pong, close, size limit.
* ``picows``: picows' own server (``ws_create_server``, on uvloop, no aiofastnet).
* ``sniff``: ``raw`` behind a protocol factory that reads the first request head and hands
  the transport either to the raw protocol (``GET /v1`` with ``Upgrade: websocket``) or to
  aiohttp's ``RequestHandler`` (anything else), on one listening socket (``sniff.py``).

Every lean layer keeps the same per-connection state (a ``__slots__`` object: transport,
peer id, channels, two keepalive flags, a read buffer only while a frame is incomplete) and
uses the hub's shared keepalive wheel; outgoing frames are the hub's pre-built bytes written
to the transport (what Hubbub's outbox does).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, cast

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub import Hub, new_peer_id

MAX_MESSAGE_BYTES = 65536 + 1024


class PeerState:
    """The fields every prototype's connection carries for the hub."""

    __slots__ = ("channels", "heard", "hub", "peer_id", "pinged")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.peer_id = new_peer_id()
        self.channels: set[str] | None = None
        self.heard = True
        self.pinged = False


# ------------------------------------------------------------------------------- aiohttp


async def serve_aiohttp(hub: Hub, port: int) -> None:
    from aiohttp import WSMsgType, web

    class AiohttpPeer(PeerState):
        __slots__ = ("transport",)

        def write_frame(self, frame: bytes) -> None:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(frame)

        def send_ping(self) -> None:
            self.heard = True  # aiohttp's own heartbeat does it

        def close_with(self, code: int, reason: str) -> None:
            pass

    async def handle(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, compress=False, heartbeat=30.0)
        await ws.prepare(request)
        peer = AiohttpPeer(hub)
        peer.transport = request.transport
        hub.opened(peer)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    hub.text(peer, msg.data)
        finally:
            hub.closed(peer)
        return ws

    app = web.Application()
    app.router.add_get("/v1", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = cast(Any, site)._server
    announce(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()


# ---------------------------------------------------------------------------- websockets


class WebsocketsPeer(PeerState, asyncio.Protocol):
    __slots__ = ("_parts", "protocol", "transport")

    def __init__(self, hub: Hub) -> None:
        from websockets.server import ServerProtocol

        super().__init__(hub)
        self.protocol = ServerProtocol(max_size=MAX_MESSAGE_BYTES)
        self.transport: asyncio.Transport | None = None
        self._parts: list[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Opcode
        from websockets.http11 import Request

        self.heard = True
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Request):
                response = protocol.accept(event)
                protocol.send_response(response)
                if response.status_code == 101:
                    self._flush()
                    self.hub.opened(self)
            elif event.opcode is Opcode.TEXT or event.opcode is Opcode.CONT:
                if event.fin and self._parts is None:
                    self.hub.text(self, event.data)
                else:
                    self._parts = [*(self._parts or []), event.data]
                    if event.fin:
                        self.hub.text(self, b"".join(self._parts))
                        self._parts = None
        self._flush()

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if self.transport is None:
                return
            if chunk:
                self.transport.write(chunk)
            else:  # the protocol asks for EOF after a close
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.hub.closed(self)

    def write_frame(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.write(frame)

    def send_ping(self) -> None:
        self.protocol.send_ping(b"")
        self._flush()

    def close_with(self, code: int, reason: str) -> None:
        self.protocol.send_close(code, reason)
        self._flush()


# ------------------------------------------------------------------------------- wsproto


class WsprotoPeer(PeerState, asyncio.Protocol):
    __slots__ = ("_parts", "connection", "transport")

    def __init__(self, hub: Hub) -> None:
        from wsproto import ConnectionType, WSConnection

        super().__init__(hub)
        self.connection = WSConnection(ConnectionType.SERVER)
        self.transport: asyncio.Transport | None = None
        self._parts: list[str] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        from wsproto.events import (
            AcceptConnection,
            CloseConnection,
            Ping,
            Request,
            TextMessage,
        )

        self.heard = True
        connection = self.connection
        connection.receive_data(data)
        out: list[bytes] = []
        for event in connection.events():
            if isinstance(event, TextMessage):
                if event.message_finished and self._parts is None:
                    self.hub.text(self, event.data)
                else:
                    self._parts = [*(self._parts or []), event.data]
                    if event.message_finished:
                        self.hub.text(self, "".join(self._parts))
                        self._parts = None
            elif isinstance(event, Request):
                out.append(connection.send(AcceptConnection()))
                self._write(out)
                self.hub.opened(self)
            elif isinstance(event, Ping):
                out.append(connection.send(event.response()))
            elif isinstance(event, CloseConnection):
                out.append(connection.send(event.response()))
                self._write(out)
                if self.transport is not None:
                    self.transport.close()
        self._write(out)

    def _write(self, out: list[bytes]) -> None:
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        out.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.hub.closed(self)

    def write_frame(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.write(frame)

    def send_ping(self) -> None:
        from wsproto.events import Ping

        self._write([self.connection.send(Ping())])

    def close_with(self, code: int, reason: str) -> None:
        from wsproto.events import CloseConnection

        self._write([self.connection.send(CloseConnection(code, reason))])


# -------------------------------------------------------------------------------- picows


async def serve_picows(hub: Hub, port: int) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class PicowsPeer(WSListener):  # type: ignore[misc]
        # WSListener is a Cython class: PeerState cannot be a second base (layout conflict).
        __slots__ = ("channels", "heard", "hub", "peer_id", "pinged", "transport")

        def __init__(self, hub: Hub) -> None:
            self.hub = hub
            self.peer_id = new_peer_id()
            self.channels: set[str] | None = None
            self.heard = True
            self.pinged = False

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport
            hub.opened(self)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            self.heard = True
            if frame.msg_type == WSMsgType.TEXT:
                hub.text(self, frame.get_payload_as_bytes())
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            hub.closed(self)

        def write_frame(self, frame: bytes) -> None:
            self.transport.underlying_transport.write(frame)

        def send_ping(self) -> None:
            self.transport.send_ping()

        def close_with(self, code: int, reason: str) -> None:
            self.transport.send_close(code, reason.encode())
            self.transport.disconnect()

    def listener(request: Any) -> PicowsPeer | None:
        return PicowsPeer(hub) if request.path.startswith(b"/v1") else None

    server = await ws_create_server(
        listener,
        "127.0.0.1",
        port,
        use_aiofastnet=False,
        max_frame_size=MAX_MESSAGE_BYTES,
        read_buffer_init_size=PICOWS_BUFFER,
    )
    announce(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()


PICOWS_BUFFER = 16 * 1024


# ---------------------------------------------------------------------------------- main


async def serve_protocol(hub: Hub, port: int, factory: Any) -> None:
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", port)
    announce(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()


def announce(port: int) -> None:
    print(f"listening on {port}", flush=True)


async def main(impl: str, port: int) -> None:
    global PICOWS_BUFFER
    hub = Hub()
    if impl == "aiohttp":
        await serve_aiohttp(hub, port)
    elif impl == "websockets":
        await serve_protocol(hub, port, lambda: WebsocketsPeer(hub))
    elif impl == "wsproto":
        await serve_protocol(hub, port, lambda: WsprotoPeer(hub))
    elif impl == "raw":
        from raw import RawWebSocket

        await serve_protocol(hub, port, lambda: RawWebSocket(hub))
    elif impl.startswith("picows"):
        # picows-small: a 1 KiB initial read buffer instead of picows' default 16 KiB.
        PICOWS_BUFFER = 1024 if impl == "picows-small" else 16 * 1024
        await serve_picows(hub, port)
    elif impl == "sniff":
        from sniff import serve_sniffing

        await serve_sniffing(hub, port, announce)
    else:
        raise SystemExit(f"unknown implementation {impl}")


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
