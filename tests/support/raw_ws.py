"""WebSocket clients over raw sockets, for behaviour no well-behaved client library shows:
clients that never read (tiny receive buffers), that keep sending while the server closes
them, and that read the close frame byte for byte.

    silent = SilentClient.connect(host, port, "/v1?key=pk_live_demo", rcvbuf=4096)
    silent.send_text('{"type":"subscribe",...}')      # and then never read again

    flood = await StreamClient.connect(host, port, "/v1?key=pk_live_demo")
    outcome = await flood.flood_until_closed(frame_bytes, timeout_s=10)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from dataclasses import dataclass

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9


def _upgrade_request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def masked_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A client frame (RFC 6455 5.2: clients mask every frame)."""
    mask = os.urandom(4)
    length = len(payload)
    head = bytes((0x80 | opcode,))
    if length < 126:
        head += bytes((0x80 | length,))
    elif length < 65536:
        head += bytes((0x80 | 126,)) + length.to_bytes(2, "big")
    else:
        head += bytes((0x80 | 127,)) + length.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame (unmasked, unfragmented): its opcode and payload."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


class SilentClient:
    """A blocking socket that completes the upgrade, may send a few frames, and never reads
    again (its receive buffer is as small as the kernel allows)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def connect(cls, host: str, port: int, path: str, rcvbuf: int | None = 4096) -> SilentClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect
        sock.settimeout(10)
        sock.connect((host, port))
        sock.sendall(_upgrade_request(host, port, path))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)  # byte by byte: leave the welcome frame unread
            assert chunk, "the server closed during the upgrade"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(sock)

    def send_text(self, text: str) -> None:
        self.sock.sendall(masked_frame(text.encode()))

    def closed_by_server(self, timeout_s: float) -> bool:
        """Read everything the kernel holds; True when the server ended the connection
        (EOF or reset) within ``timeout_s``, False when it still keeps it open."""
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.sock.settimeout(remaining)
                if not self.sock.recv(1 << 16):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def burst_then_read_close(self, frame: bytes, total_bytes: int) -> FloodOutcome:
        """Send ``frame`` repeated up to ``total_bytes`` without reading (sendall blocks while
        the server reads), then read to the close frame. If the server closed its socket with
        this input unread, the kernel reset the connection and the close frame is lost."""
        burst = frame * max(1, total_bytes // len(frame))
        error: str | None = None
        try:
            self.sock.sendall(burst)
        except OSError as exc:
            error = type(exc).__name__
        try:
            code = _read_close_code(self.sock)
        except OSError as exc:
            return FloodOutcome(None, len(burst) // len(frame), error or type(exc).__name__)
        return FloodOutcome(code, len(burst) // len(frame), error)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _read_close_code(sock: socket.socket) -> int | None:
    buffer = b""

    def take(count: int) -> bytes:
        nonlocal buffer
        while len(buffer) < count:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionAbortedError("EOF before the close frame")
            buffer += chunk
        head, buffer = buffer[:count], buffer[count:]
        return head

    while True:
        first, second = take(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(take(2), "big")
        elif length == 127:
            length = int.from_bytes(take(8), "big")
        payload = take(length)
        if first & 0x0F == OP_CLOSE:
            return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005


@dataclass
class FloodOutcome:
    close_code: int | None  # None: the connection ended without a close frame (a "1006")
    frames_sent: int
    error: str | None  # how the connection ended when no close frame arrived


class StreamClient:
    """An asyncio client that parses server frames itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, path: str) -> StreamClient:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(_upgrade_request(host, port, path))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def read_frame(self) -> tuple[int, bytes]:
        return await read_frame(self.reader)

    async def read_until_close(self) -> int | None:
        """Frames until the close frame: its code (None: the stream ended without one)."""
        try:
            while True:
                opcode, payload = await self.read_frame()
                if opcode == OP_CLOSE:
                    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return None

    async def flood_until_closed(self, frame: bytes, timeout_s: float) -> FloodOutcome:
        """Send ``frame`` (already masked) over and over while reading; stop at the close
        frame. Sending goes on while the server closes, as an abusive client's would."""
        sent = 0
        error: str | None = None

        async def flood() -> None:
            nonlocal sent, error
            # A burst first (as an abusive client's send buffer holds), then steady sending.
            burst = frame * max(1, (1 << 20) // len(frame))
            batch = frame * max(1, 16384 // len(frame))
            per_batch = len(batch) // len(frame)
            try:
                self.writer.write(burst)
                sent += len(burst) // len(frame)
                while True:
                    self.writer.write(batch)
                    sent += per_batch
                    await self.writer.drain()
            except (ConnectionResetError, BrokenPipeError, RuntimeError) as exc:
                error = type(exc).__name__

        flooding = asyncio.create_task(flood())
        try:
            async with asyncio.timeout(timeout_s):
                code = await self.read_until_close()
        finally:
            flooding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flooding
            self.writer.transport.abort()
        return FloodOutcome(code, sent, error)

    async def busy_flood_until_closed(self, frame: bytes, timeout_s: float) -> FloodOutcome:
        """Like :meth:`flood_until_closed`, but a client too busy sending to read promptly:
        it writes thousands of frames between two looks at its input."""
        sent = 0
        transport = self.writer.transport
        reading = asyncio.create_task(self.read_until_close())
        try:
            async with asyncio.timeout(timeout_s):
                while not reading.done():
                    if not transport.is_closing():
                        for _ in range(2000):
                            transport.write(frame)
                        sent += 2000
                    # Yield briefly; a real busy client does work of its own here.
                    await asyncio.wait({reading}, timeout=0.05)
                code = reading.result()
        finally:
            reading.cancel()
            transport.abort()
        return FloodOutcome(code, sent, None)

    def close(self) -> None:
        self.writer.transport.abort()
