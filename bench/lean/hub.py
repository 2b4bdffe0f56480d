"""The fan-out every lean-transport prototype shares (bench/lean/server.py), kept tiny so that
what differs between the prototypes is the WebSocket layer alone.

Speaks the part of the realtime protocol ``bench/peers_load.py`` uses: ``welcome`` on open,
``subscribe`` -> ``ack``, ``publish`` -> one ``message`` frame built once, the same bytes written
to every other subscriber, then ``ack``. No auth (the transports are compared, JWT cost is
measured separately), no presence, no limits.

Keepalive is one shared wheel, not a timer per connection: every ``tick_s`` one of
``slots`` buckets is visited; a connection that has been silent since its last visit is
pinged, one that stayed silent after a ping is closed (1011). Adding a connection is a set
insertion; an idle connection costs no timer, no task and no handle.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Protocol

import msgspec


class Peer(Protocol):
    """What the hub needs from a connection."""

    peer_id: str
    channels: set[str] | None
    heard: bool  # something arrived since the wheel last looked
    pinged: bool

    def write_frame(self, frame: bytes) -> None: ...

    def send_ping(self) -> None: ...

    def close_with(self, code: int, reason: str) -> None: ...


class Request(msgspec.Struct, omit_defaults=True):
    type: str
    channel: str = ""
    requestId: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


_decode_request = msgspec.json.Decoder(Request).decode
_encode = msgspec.json.Encoder().encode
_peer_ids = itertools.count(1)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 section 5.2)."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + length.to_bytes(8, "big") + payload


def new_peer_id() -> str:
    return f"p{next(_peer_ids)}"


class Hub:
    __slots__ = ("channels", "wheel")

    def __init__(self) -> None:
        self.channels: dict[str, set[Peer]] = {}
        self.wheel = KeepaliveWheel()

    def opened(self, peer: Peer) -> None:
        self.wheel.add(peer)
        welcome = b'{"type":"welcome","peerId":"' + peer.peer_id.encode() + b'"}'
        peer.write_frame(text_frame(welcome))

    def closed(self, peer: Peer) -> None:
        self.wheel.discard(peer)
        for channel in peer.channels or ():
            members = self.channels.get(channel)
            if members is not None:
                members.discard(peer)
                if not members:
                    del self.channels[channel]
        peer.channels = None

    def text(self, peer: Peer, payload: bytes | str) -> None:
        try:
            request = _decode_request(payload)
        except msgspec.DecodeError:
            peer.write_frame(text_frame(b'{"type":"error","code":"malformed_message"}'))
            return
        if request.type == "subscribe":
            if peer.channels is None:
                peer.channels = set()
            peer.channels.add(request.channel)
            self.channels.setdefault(request.channel, set()).add(peer)
        elif request.type == "publish":
            data = request.data
            body = (
                b'{"type":"message","channel":'
                + _encode(request.channel)
                + b',"from":"'
                + peer.peer_id.encode()
                + b'","data":'
                + bytes(data)
                + b"}"
            )
            frame = text_frame(body)
            for member in self.channels.get(request.channel, ()):
                if member is not peer:
                    member.write_frame(frame)
        if request.requestId is not None:
            ack = b'{"type":"ack","requestId":' + _encode(request.requestId) + b"}"
            peer.write_frame(text_frame(ack))


class KeepaliveWheel:
    """Pings silent connections, one bucket per tick; closes those that do not answer."""

    __slots__ = ("_handle", "_next", "_position", "_slots", "tick_s")

    def __init__(self, interval_s: float = 30.0, slots: int = 30) -> None:
        self._slots: list[set[Peer]] = [set() for _ in range(slots)]
        self.tick_s = interval_s / slots
        self._position = 0
        self._next = 0
        self._handle: asyncio.TimerHandle | None = None

    def add(self, peer: Peer) -> None:
        self._slots[self._next].add(peer)
        self._next = (self._next + 1) % len(self._slots)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.tick_s, self._tick)

    def discard(self, peer: Peer) -> None:
        for bucket in self._slots:
            if peer in bucket:
                bucket.discard(peer)
                return

    def _tick(self) -> None:
        bucket = self._slots[self._position]
        self._position = (self._position + 1) % len(self._slots)
        silent: list[Peer] = []
        for peer in bucket:
            if peer.heard:
                peer.heard, peer.pinged = False, False
            elif peer.pinged:
                silent.append(peer)
            else:
                peer.pinged = True
                peer.send_ping()
        for peer in silent:
            peer.close_with(1011, "keepalive timeout")
        self._handle = asyncio.get_running_loop().call_later(self.tick_s, self._tick)


OnReady = Callable[[int], None]
