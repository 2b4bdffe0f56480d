"""A minimal RFC 6455 server protocol on ``asyncio.Protocol`` (prototype for a lean ``/v1``).

One object per connection, ``__slots__`` only, no task, no timer, no future: the upgrade is
parsed from the first bytes, then each ``data_received`` parses whole frames in place.
Covered: the opening handshake (GET, ``Upgrade: websocket``, ``Connection: upgrade``, version
13, a 16-byte key) with 400 on anything else; client frames must be masked (1002 if not);
RSV bits must be clear (1002); control frames are final and at most 125 bytes (1002);
fragmented messages are reassembled (continuation without a start, or a new start inside one:
1002); text must be UTF-8 (1007); messages above the limit: 1009; ping -> pong with the same
payload; a close frame is answered with the same code and the TCP connection closed; after a
violation the close frame is sent and the peer's remaining bytes are read and dropped (for at
most 2 s) so the close is not turned into a reset. A read buffer exists only while a frame
is incomplete. ``check_raw.py`` exercises each of these.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from hub import Hub

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES = 8192
MAX_MESSAGE_BYTES = 65536 + 1024
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, as one big-integer operation (C speed for any length)."""
    length = len(payload)
    if not length:
        return payload
    repeated = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        length, "little"
    )


def control_frame(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return control_frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode()[:123])


def upgrade_response(head: bytes) -> bytes | None:
    """The 101 response for a valid upgrade request head, or None."""
    lines = head.split(b"\r\n")
    method, _, rest = lines[0].partition(b" ")
    if method != b"GET" or not rest.endswith(b" HTTP/1.1"):
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"upgrade", b"").lower() != b"websocket":
        return None
    if b"upgrade" not in (t.strip() for t in headers.get(b"connection", b"").lower().split(b",")):
        return None
    if headers.get(b"sec-websocket-version") != b"13":
        return None
    key = headers.get(b"sec-websocket-key", b"")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
        return None
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


class RawWebSocket(asyncio.Protocol):
    __slots__ = (
        "_buffer",
        "_closing",
        "_fragments",
        "_open",
        "_received_close",
        "channels",
        "heard",
        "hub",
        "peer_id",
        "pinged",
        "transport",
    )

    def __init__(self, hub: Hub) -> None:
        from hub import new_peer_id

        self.hub = hub
        self.peer_id = new_peer_id()
        self.channels: set[str] | None = None
        self.heard = True
        self.pinged = False
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._fragments: list[bytes] | None = None
        self._open = False
        self._closing = False
        self._received_close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._open:
            self._open = False
            self.hub.closed(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.heard = True
        if self._closing:
            return  # after our close frame: read and drop until the peer closes or time runs out
        if self._buffer:
            data, self._buffer = self._buffer + data, b""
        if not self._open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > MAX_HEAD_BYTES:
                    self._reject()
                else:
                    self._buffer = data
                return
            response = upgrade_response(data[:end])
            if response is None:
                self._reject()
                return
            assert self.transport is not None
            self.transport.write(response)
            self._open = True
            self.hub.opened(self)
            data = data[end + 4 :]
        self._frames(data)

    def _frames(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while self.transport is not None and end - pos >= 2:
            first, second = data[pos], data[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if end - start < 2:
                    break
                length = int.from_bytes(data[start : start + 2], "big")
                start += 2
            elif length == 127:
                if end - start < 8:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            if not second & 0x80 or first & 0x70:
                self.close_with(1002, "protocol error")
                return
            if length > MAX_MESSAGE_BYTES:
                self.close_with(1009, "message too big")
                return
            stop = start + 4 + length
            if stop > end:
                break
            payload = unmask(data[start + 4 : stop], data[start : start + 4])
            pos = stop
            if not self._frame(first & 0x80, first & 0x0F, payload):
                return
        if pos < end and self.transport is not None:
            self._buffer = data[pos:]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> bool:
        """Handle one frame; False once the connection is closing."""
        if opcode >= OP_CLOSE:
            if not fin or len(payload) > 125:
                self.close_with(1002, "bad control frame")
                return False
            if opcode == OP_PING:
                self.write_frame(control_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1000
                self._received_close = True
                self.close_with(code if 1000 <= code < 5000 else 1002, "")
                return False
            elif opcode != OP_PONG:
                self.close_with(1002, "unknown opcode")
                return False
            return True
        if opcode == OP_CONT:
            if self._fragments is None:
                self.close_with(1002, "continuation without a message")
                return False
            self._fragments.append(payload)
            if sum(map(len, self._fragments)) > MAX_MESSAGE_BYTES:
                self.close_with(1009, "message too big")
                return False
            if not fin:
                return True
            payload, self._fragments = b"".join(self._fragments), None
            opcode = OP_TEXT
        elif self._fragments is not None:
            self.close_with(1002, "new message inside a fragmented one")
            return False
        elif opcode not in (OP_TEXT, OP_BINARY):
            self.close_with(1002, "unknown opcode")
            return False
        elif not fin:
            self._fragments = [payload]
            return True
        if opcode == OP_TEXT:
            try:
                payload.decode()
            except UnicodeDecodeError:
                self.close_with(1007, "invalid UTF-8")
                return False
            self.hub.text(self, payload)
        return True

    def _reject(self) -> None:
        if self.transport is not None:
            self.transport.write(BAD_REQUEST)
            self.transport.close()
            self.transport = None

    # -- what the hub calls

    def write_frame(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.write(frame)

    def send_ping(self) -> None:
        self.write_frame(control_frame(OP_PING, b""))

    def close_with(self, code: int, reason: str) -> None:
        """Send a close frame. After a peer's close the TCP connection ends at once; after a
        violation the peer may still be sending, and closing with unread bytes would reset the
        connection before the peer reads the close frame, so the rest is read and dropped
        until the peer closes (or 2 s pass: a timer only for a closing connection)."""
        transport = self.transport
        if transport is None or self._closing:
            return
        transport.write(close_frame(code, reason))
        if self._received_close:
            transport.close()
            self.transport = None
            return
        self._closing = True
        asyncio.get_running_loop().call_later(2.0, transport.abort)
