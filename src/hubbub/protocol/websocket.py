"""The server side of RFC 6455 as plain data: the opening handshake and the frame reader.

Sans-I/O (stdlib only, no clocks, no sockets): :func:`parse_upgrade` reads a request head,
:func:`accept_response` builds the 101, :class:`FrameReader` turns received bytes into whole
messages, control frames, or a :class:`Violation` naming the close code the RFC asks for, and
:func:`encode_frame` / :func:`close_frame` build the server's unmasked frames. The transport
(``hubbub.transports.realtime_socket``) owns the socket and the timing.

What the reader enforces (each a close code the peer reads): client frames must be masked, RSV
bits clear, opcodes known (1002); control frames final and at most 125 bytes (1002);
continuation frames only inside a fragmented message and no new message inside one (1002);
text is UTF-8 (1007); a message above the size limit, announced or reassembled (1009); a close
frame's code must be one a peer may send and its reason UTF-8 (1002 / 1007). A read buffer
exists only while a frame is incomplete.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES: Final = 8192

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_INVALID_DATA: Final = 1007
CLOSE_TOO_BIG: Final = 1009
# Sent in place of a code when the peer's close frame carried none (RFC 6455 7.1.5).
CLOSE_NO_STATUS: Final = 1005


# --- the opening handshake ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A valid WebSocket upgrade, with what Hubbub reads from it."""

    path: str
    query: dict[str, str]  # decoded like a form; the first value of a repeated name wins
    key: str  # Sec-WebSocket-Key
    origin: str | None
    forwarded_for: str | None
    # Every header, names lower-cased; a repeated one joined (cookies with "; ", others ", ").
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class UpgradeRefusal:
    """Not an acceptable upgrade: answer with this HTTP status and body, then close."""

    status: int
    body: str


def _joined(headers: dict[str, str], name: str, value: str) -> None:
    previous = headers.get(name)
    if previous is None:
        headers[name] = value
    else:
        headers[name] = f"{previous}{'; ' if name == 'cookie' else ', '}{value}"


def parse_upgrade(head: bytes) -> UpgradeRequest | UpgradeRefusal:
    """Parse a request head (everything before the blank line, without it)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return UpgradeRefusal(400, "bad request")
    request_line, *lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return UpgradeRefusal(400, "bad request")
    method, target, version = parts
    if method != "GET":
        return UpgradeRefusal(405, "method not allowed")
    if version != "HTTP/1.1":
        return UpgradeRefusal(400, "bad request")
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return UpgradeRefusal(400, "bad request")
        _joined(headers, name.lower(), value.strip(" \t"))
    path, _, raw_query = target.partition("?")
    if headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in (
        token.strip() for token in headers.get("connection", "").lower().split(",")
    ):
        return UpgradeRefusal(426, "websocket upgrade required")
    if headers.get("sec-websocket-version") != "13":
        return UpgradeRefusal(400, "unsupported websocket version")
    key = headers.get("sec-websocket-key", "")
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        return UpgradeRefusal(400, "invalid sec-websocket-key")
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(name, value)
    return UpgradeRequest(
        path=path,
        query=query,
        key=key,
        origin=headers.get("origin"),
        forwarded_for=headers.get("x-forwarded-for"),
        headers=headers,
    )


def accept_response(key: str) -> bytes:
    """The 101 Switching Protocols answer to a request with this ``Sec-WebSocket-Key``."""
    accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


_REASONS: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def http_response(status: int, body: str) -> bytes:
    """A complete plain-text HTTP/1.1 response that ends the connection."""
    payload = body.encode()
    extra = b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" if status == 426 else b""
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Length: {len(payload)}\r\n".encode()
        + extra
        + b"Connection: close\r\n\r\n"
        + payload
    )


# --- server frames --------------------------------------------------------------------------


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """An unmasked, final frame (RFC 6455 5.2): what a server sends."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 127)) + length.to_bytes(8, "big")
    return header + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit a control frame's 125 bytes, on a character."""
    raw = reason.encode()
    if len(raw) > 123:
        raw = raw[:123].decode(errors="ignore").encode()
    return encode_frame(code.to_bytes(2, "big") + raw, OP_CLOSE)


PING_FRAME: Final = encode_frame(b"", OP_PING)


# --- the frame reader -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A whole data message (reassembled if it was fragmented); text is valid UTF-8."""

    text: bool
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The peer's close frame: ``code`` is 1005 when it carried none."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Violation:
    """The peer broke the protocol: close with this code; read nothing after it."""

    close_code: int
    reason: str


Event = Message | Ping | Pong | Close | Violation


def _valid_close_code(code: int) -> bool:
    # RFC 6455 7.4: codes a peer may put on the wire (1004-1006 and 1015 are reserved).
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code < 5000


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, as one big-integer operation (C speed for any length)."""
    length = len(payload)
    if not length:
        return payload
    repeated = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        length, "little"
    )


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class FrameReader:
    """Client frames from a byte stream, one event at a time (feed, then ``next_event``).

    ``max_message_bytes`` bounds a message's payload (0: no bound). After a
    :class:`Violation` or a :class:`Close` the reader is finished and returns nothing more.
    """

    __slots__ = ("_buffer", "_done", "_fragment_bytes", "_fragments", "_max", "_pos")

    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._buffer = b""
        self._pos = 0
        self._fragments: list[bytes] | None = None
        self._fragment_bytes = 0
        self._done = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed into an event."""
        return len(self._buffer) - self._pos

    def discard(self) -> None:
        """Drop what is buffered and read nothing more (the connection is closing)."""
        self._finish()

    def feed(self, data: bytes) -> None:
        if self._done:
            return
        if self._pos < len(self._buffer):
            self._buffer = self._buffer[self._pos :] + data
        else:
            self._buffer = data
        self._pos = 0

    def next_event(self) -> Event | None:
        """The next complete event, or None until more bytes arrive."""
        while not self._done:
            data, pos = self._buffer, self._pos
            end = len(data)
            if end - pos < 2:
                break
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
            opcode = first & 0x0F
            fin = first & 0x80
            if first & 0x70:
                return self._violation(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not second & 0x80:
                return self._violation(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            if opcode >= OP_CLOSE:
                if opcode > OP_PONG:
                    return self._violation(CLOSE_PROTOCOL_ERROR, "unknown opcode")
                if not fin or length > 125:
                    return self._violation(CLOSE_PROTOCOL_ERROR, "bad control frame")
            elif opcode > OP_BINARY:
                return self._violation(CLOSE_PROTOCOL_ERROR, "unknown opcode")
            elif self._max and length + self._fragment_bytes > self._max:
                return self._violation(CLOSE_TOO_BIG, "message too big")
            stop = start + 4 + length
            if stop > end:
                break
            payload = unmask(data[start + 4 : stop], data[start : start + 4])
            if stop == end:
                self._buffer, self._pos = b"", 0
            else:
                self._pos = stop
            event = self._frame(fin, opcode, payload)
            if event is not None:
                return event
        return None

    def _frame(self, fin: int, opcode: int, payload: bytes) -> Event | None:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if opcode == OP_CLOSE:
            return self._close(payload)
        if opcode == OP_CONTINUATION:
            fragments = self._fragments
            if fragments is None:
                return self._violation(CLOSE_PROTOCOL_ERROR, "continuation without a message")
            fragments.append(payload)
            self._fragment_bytes += len(payload)
            if not fin:
                return None
            text = fragments[0] == b"T"
            payload = b"".join(fragments[1:])
            self._fragments, self._fragment_bytes = None, 0
        elif self._fragments is not None:
            return self._violation(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        elif not fin:
            # The first entry records the message's type.
            self._fragments = [b"T" if opcode == OP_TEXT else b"B", payload]
            self._fragment_bytes = len(payload)
            return None
        else:
            text = opcode == OP_TEXT
        if text and not _is_utf8(payload):
            return self._violation(CLOSE_INVALID_DATA, "invalid UTF-8")
        return Message(text, payload)

    def _close(self, payload: bytes) -> Event:
        self._finish()
        if not payload:
            return Close(CLOSE_NO_STATUS, "")
        if len(payload) == 1:
            return Violation(CLOSE_PROTOCOL_ERROR, "bad close frame")
        code = int.from_bytes(payload[:2], "big")
        if not _valid_close_code(code):
            return Violation(CLOSE_PROTOCOL_ERROR, "invalid close code")
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError:
            return Violation(CLOSE_INVALID_DATA, "invalid UTF-8 in close reason")
        return Close(code, reason)

    def _violation(self, code: int, reason: str) -> Violation:
        self._finish()
        return Violation(code, reason)

    def _finish(self) -> None:
        self._done = True
        self._buffer, self._pos, self._fragments = b"", 0, None
