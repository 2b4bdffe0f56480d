"""Raw WebSocket clients for ``bench/peers_load.py``: framing, one dialect per peer, and
the client protocol that counts deliveries in place.

The clients speak just enough RFC 6455 (masked client frames, unmasked server frames, ping,
close) and of each peer's own protocol (a *dialect*: the realtime protocol, Engine.IO 4 /
Socket.IO 5 packets, the NATS client protocol) to connect with credentials, subscribe,
publish and count deliveries. Counting scans each read's bytes for frame headers and the
dialect's delivery prefix, without a task or an allocation per delivery.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import jwt

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
STAMP_KEY = b'"t":'
IP_BIND_ADDRESS_NO_PORT = 24  # Linux; lets connect() pick the port per 4-tuple after bind()
JWT_SECRET = "bench-secret-0123456789abcdef0123456789"
JWT_KID = "sk_bench"
NATS_TOKEN = "bench-token"
PAD = "x" * 24


def masked_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A final client frame, masked with a fresh key (RFC 6455 section 5.3)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    key = os.urandom(4)
    repeated = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return header + key + masked


def make_token(peer: str, lifetime_s: float = 3600.0) -> str:
    claims = {"sub": peer, "exp": int(time.time() + lifetime_s)}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256", headers={"kid": JWT_KID})


def stamp_of(buf: bytes, start: int, stop: int) -> float | None:
    """The ``"t":<seconds>`` value inside a delivery, if it carries one."""
    at = buf.find(STAMP_KEY, start, stop)
    if at < 0:
        return None
    at += len(STAMP_KEY)
    end = at
    while end < stop and buf[end] in b"0123456789.e-+":
        end += 1
    return float(buf[at:end])


class Tally:
    """Deliveries across all subscribers of a phase."""

    __slots__ = ("done", "last_at", "latencies", "received", "since", "target")

    def __init__(self) -> None:
        self.received = 0
        self.target = 0
        self.last_at = 0.0
        self.latencies: list[float] | None = None
        self.done: asyncio.Event | None = None

    def reset(self, target: int, latencies: bool = False) -> None:
        self.received, self.target, self.last_at = 0, target, 0.0
        self.latencies = [] if latencies else None
        self.done = asyncio.Event()

    def add(self, count: int, now: float) -> None:
        self.received += count
        self.last_at = now
        if self.done is not None and self.received >= self.target:
            self.done.set()


# ---------------------------------------------------------------------------------- dialects


class Dialect:
    """What differs between peers: the path, the control frames and the delivery marker."""

    name = ""
    delivery_prefix = b""
    opcode = OP_TEXT
    stream = False  # deliveries are parsed from the concatenated payloads (NATS)

    def path(self, base_path: str, credential: str) -> str:
        raise NotImplementedError

    def on_open(self, client: Client) -> None:
        """Called once the upgrade is done."""

    def control(self, client: Client, payload: bytes) -> None:
        """A frame that is not a delivery: welcome, acks, errors, keepalives."""
        raise NotImplementedError

    def subscribe(self, channel: str, seq: int) -> bytes:
        raise NotImplementedError

    def publish(self, channel: str, seq: int, sent_at: float) -> bytes:
        raise NotImplementedError

    def credential(self, peer: str) -> str:
        return make_token(peer)


class RealtimeDialect(Dialect):
    name = "hubbub"
    delivery_prefix = b'{"type":"message"'

    def path(self, base_path: str, credential: str) -> str:
        return f"{base_path}?token={credential}"

    def control(self, client: Client, payload: bytes) -> None:
        if payload.startswith(b'{"type":"ack"'):
            client.event("ack", payload)
        elif payload.startswith(b'{"type":"welcome"'):
            client.event("welcome", payload)
        elif payload.startswith(b'{"type":"error"'):
            client.event("error", payload)

    def subscribe(self, channel: str, seq: int) -> bytes:
        body = f'{{"type":"subscribe","channel":"{channel}","requestId":"s{seq}"}}'
        return masked_frame(body.encode())

    def publish(self, channel: str, seq: int, sent_at: float) -> bytes:
        body = (
            f'{{"type":"publish","channel":"{channel}","requestId":"p{seq}",'
            f'"data":{{"seq":{seq},"pad":"{PAD}","t":{sent_at!r}}}}}'
        )
        return masked_frame(body.encode())


class SocketIoDialect(Dialect):
    name = "socketio"
    delivery_prefix = b'42["message"'

    def path(self, base_path: str, credential: str) -> str:
        return "/socket.io/?EIO=4&transport=websocket"

    def control(self, client: Client, payload: bytes) -> None:
        if payload == b"2":  # Engine.IO ping
            client.send(masked_frame(b"3"))
        elif payload.startswith(b"43"):
            client.event("ack", payload)
        elif payload.startswith(b"40"):
            client.event("welcome", payload)
        elif payload.startswith(b"0"):  # Engine.IO open: now CONNECT to the namespace
            auth = json.dumps({"token": client.credential}, separators=(",", ":"))
            client.send(masked_frame(b"40" + auth.encode()))
        elif payload.startswith((b"44", b"41", b"1")):
            client.event("error", payload)

    def subscribe(self, channel: str, seq: int) -> bytes:
        return masked_frame(f'42{seq}["subscribe","{channel}"]'.encode())

    def publish(self, channel: str, seq: int, sent_at: float) -> bytes:
        data = f'{{"seq":{seq},"pad":"{PAD}","t":{sent_at!r}}}'
        return masked_frame(f'42{seq}["publish","{channel}",{data}]'.encode())


class NatsDialect(Dialect):
    name = "nats"
    opcode = OP_BINARY
    stream = True

    def path(self, base_path: str, credential: str) -> str:
        return "/"

    def credential(self, peer: str) -> str:
        return NATS_TOKEN

    def control(self, client: Client, payload: bytes) -> None:
        if payload.startswith(b"PONG"):
            client.event("welcome" if not client.welcomed else "ack", payload)
        elif payload.startswith(b"PING"):
            client.send(masked_frame(b"PONG\r\n", OP_BINARY))
        elif payload.startswith(b"INFO"):
            connect = json.dumps(
                {
                    "verbose": False,
                    "pedantic": False,
                    "auth_token": client.credential,
                    "no_echo": True,
                    "protocol": 1,
                    "headers": False,
                },
                separators=(",", ":"),
            )
            client.send(masked_frame(f"CONNECT {connect}\r\nPING\r\n".encode(), OP_BINARY))
        elif payload.startswith(b"-ERR"):
            client.event("error", payload)

    def subscribe(self, channel: str, seq: int) -> bytes:
        return masked_frame(f"SUB {channel} {seq + 1}\r\nPING\r\n".encode(), OP_BINARY)

    def publish(self, channel: str, seq: int, sent_at: float) -> bytes:
        data = f'{{"seq":{seq},"pad":"{PAD}","t":{sent_at!r}}}'.encode()
        return masked_frame(
            f"PUB {channel} {len(data)}\r\n".encode() + data + b"\r\nPING\r\n", OP_BINARY
        )


DIALECTS: dict[str, Dialect] = {
    "hubbub": RealtimeDialect(),
    "socketio": SocketIoDialect(),
    "nats": NatsDialect(),
}


# ----------------------------------------------------------------------------------- client


class Client(asyncio.Protocol):
    """One raw WebSocket connection; deliveries are counted in place, the rest are events."""

    __slots__ = (
        "_buffer",
        "_closed",
        "_events",
        "_key",
        "_reading",
        "_request",
        "_stream",
        "_waiter",
        "_writes",
        "credential",
        "dialect",
        "listener",
        "messages",
        "tally",
        "transport",
        "upgraded",
        "welcomed",
    )

    def __init__(self, dialect: Dialect, tally: Tally, host: str, path: str, cred: str) -> None:
        self.dialect = dialect
        self.tally = tally
        self.credential = cred
        self.messages = 0
        self.upgraded = False
        self.welcomed = False
        self.listener: Callable[[str, bytes], None] | None = None
        self.transport: asyncio.Transport | None = None
        self._key = base64.b64encode(os.urandom(16))
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\n\r\n"
        ).encode()
        self._buffer = b""
        self._stream = b""
        self._events: deque[tuple[str, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._reading = False
        self._writes: list[bytes] = []

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)
        self._request = b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.event("lost", b"")
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            data = self._finish_handshake(data)
            if not data:
                return
        buf = self._buffer + data if self._buffer else data
        end, pos, counted = len(buf), 0, 0
        prefix, stream = self.dialect.delivery_prefix, self.dialect.stream
        tally = self.tally
        latencies = tally.latencies
        now = time.perf_counter()
        self._reading = True
        while end - pos >= 2:
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            stop = start + length
            if stop > end:
                break
            opcode = buf[pos] & 0x0F
            pos = stop
            if opcode in (OP_TEXT, OP_BINARY, 0):
                if stream:
                    counted += self._stream_received(buf[start:stop], latencies, now)
                elif buf.startswith(prefix, start):
                    counted += 1
                    if latencies is not None:
                        sent_at = stamp_of(buf, start, stop)
                        if sent_at:  # burst frames carry 0.0: not timed
                            latencies.append(now - sent_at)
                else:
                    self.dialect.control(self, buf[start:stop])
            elif opcode == OP_PING:
                self.send(masked_frame(buf[start:stop], OP_PONG))
            elif opcode == OP_CLOSE:
                self.send(masked_frame(buf[start : start + 2], OP_CLOSE))
                self.event("closed", buf[start:stop])
        self._reading = False
        self._buffer = buf[pos:] if pos < end else b""
        if self._writes and self.transport is not None:
            self.transport.write(b"".join(self._writes))
            self._writes.clear()
        if counted:
            self.messages += counted
            tally.add(counted, now)

    def _stream_received(self, chunk: bytes, latencies: list[float] | None, now: float) -> int:
        """NATS: parse protocol lines; ``MSG <subject> <sid> <size>`` is followed by a payload."""
        data = self._stream + chunk if self._stream else chunk
        pos, end, counted = 0, len(data), 0
        while pos < end:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                break
            if data.startswith(b"MSG ", pos):
                size = int(data[data.rfind(b" ", pos, eol) + 1 : eol])
                stop = eol + 2 + size
                if stop + 2 > end:
                    break
                counted += 1
                if latencies is not None:
                    sent_at = stamp_of(data, eol + 2, stop)
                    if sent_at:
                        latencies.append(now - sent_at)
                pos = stop + 2
            else:
                self.dialect.control(self, data[pos : eol + 2])
                pos = eol + 2
        self._stream = data[pos:] if pos < end else b""
        return counted

    def _finish_handshake(self, data: bytes) -> bytes:
        data = self._buffer + data
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self._buffer = data
            return b""
        head, rest = data[:end].decode("latin-1"), data[end + 4 :]
        self._buffer = b""
        expected = base64.b64encode(hashlib.sha1(self._key + WS_GUID).digest()).decode()
        status = head.split("\r\n", 1)[0]
        if " 101 " not in status + " " or expected not in head:
            self.event("error", status.encode())
            if self.transport is not None:
                self.transport.close()
            return b""
        self.upgraded = True
        self.dialect.on_open(self)
        return rest

    # -- used by the scenarios

    def send(self, frame: bytes) -> None:
        if self._reading:
            self._writes.append(frame)
        elif self.transport is not None:
            self.transport.write(frame)

    def event(self, kind: str, payload: bytes) -> None:
        if kind == "welcome":
            self.welcomed = True
        if self.listener is not None:
            self.listener(kind, payload)
            return
        self._events.append((kind, payload))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def expect(self, kind: str) -> bytes:
        """The next event, which must be ``kind``."""
        while not self._events:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        got, payload = self._events.popleft()
        if got != kind:
            raise ConnectionError(f"expected {kind}, got {got}: {payload[:200]!r}")
        return payload

    async def close(self, timeout_s: float) -> None:
        """A clean close: close frame, then wait for the server to end the TCP connection."""
        if self.transport is None:
            return
        self._closed = asyncio.get_running_loop().create_future()
        self.transport.write(masked_frame(b"\x03\xe8", OP_CLOSE))
        try:
            async with asyncio.timeout(timeout_s):
                await self._closed
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Target:
    """Where and how to connect."""

    def __init__(self, dialect: Dialect, url: str, sources: list[str]) -> None:
        parts = urlsplit(url)
        self.dialect = dialect
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.base_path = parts.path or "/"
        self.sources = sources
        self.created = 0

    async def connect(self, tally: Tally, timeout_s: float, welcome: bool = True) -> Client:
        peer = f"peer-{os.getpid()}-{self.created}"
        source = self.sources[self.created % len(self.sources)] if self.sources else None
        self.created += 1
        credential = self.dialect.credential(peer)
        path = self.dialect.path(self.base_path, credential)
        loop = asyncio.get_running_loop()

        def factory() -> Client:
            return Client(self.dialect, tally, f"{self.host}:{self.port}", path, credential)

        async with asyncio.timeout(timeout_s):
            if source is None:
                _, client = await loop.create_connection(factory, self.host, self.port)
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.setblocking(False)
                sock.bind((source, 0))
                try:
                    await loop.sock_connect(sock, (self.host, self.port))
                except BaseException:
                    sock.close()
                    raise
                _, client = await loop.create_connection(factory, sock=sock)
            if welcome:
                await client.expect("welcome")
        return client

    async def subscriber(self, tally: Tally, channel: str, seq: int, timeout_s: float) -> Client:
        client = await self.connect(tally, timeout_s)
        client.send(self.dialect.subscribe(channel, seq))
        async with asyncio.timeout(timeout_s):
            await client.expect("ack")
        return client


async def many(count: int, parallel: int, make: Callable[[int], Any]) -> list[Any]:
    gate = asyncio.Semaphore(parallel)

    async def one(index: int) -> Any:
        async with gate:
            return await make(index)

    return list(await asyncio.gather(*(one(i) for i in range(count))))
