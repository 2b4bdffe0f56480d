"""What travels between nodes over Redis pub/sub: one compact binary envelope per event.

Every envelope starts with a kind byte and the id of the node that published it, so a node can
skip its own events cheaply (it already delivered them locally, see ``redis_broker``). The
rest is a sequence of length-prefixed byte strings (``0xFFFFFFFF`` stands for None). The raw
JSON of the message travels untouched: each node builds the client frame once and fans it out.
The listings' questions and answers (rare, and structured) carry one MessagePack field.
"""

from __future__ import annotations

import struct
from typing import Final

import msgspec

from hubbub.core.broker import Direct, NodeAnswer, NodeQuery, Publication
from hubbub.core.events import ChannelEvent, ChannelEventName
from hubbub.core.history import StreamPosition
from hubbub.core.presence import PresenceDelta, PresenceEntry
from hubbub.errors import BrokerError

PUBLICATION: Final = ord("P")
# A publication on a channel with history: a PUBLICATION envelope followed by the offset and
# the epoch, which the history script appends (see ``redis_history``).
RECORDED: Final = ord("H")
DIRECT: Final = ord("D")
PRESENCE: Final = ord("E")
DISCONNECT: Final = ord("K")
COUNT: Final = ord("N")
QUESTION: Final = ord("Q")
ANSWER: Final = ord("A")
CHANNEL_EVENT: Final = ord("L")  # a lifecycle event handed to its sending node

_LENGTH = struct.Struct(">I")
_NONE: Final = 0xFFFFFFFF


class EnvelopeError(BrokerError, ValueError):
    """A payload on a Hubbub channel that no Hubbub node wrote (or a newer version did)."""


def _put(parts: list[bytes], value: bytes | None) -> None:
    if value is None:
        parts.append(_LENGTH.pack(_NONE))
    else:
        parts.append(_LENGTH.pack(len(value)))
        parts.append(value)


class _Reader:
    __slots__ = ("buffer", "position")

    def __init__(self, buffer: bytes, position: int) -> None:
        self.buffer = buffer
        self.position = position

    def optional(self) -> bytes | None:
        end = self.position + 4
        if end > len(self.buffer):
            raise EnvelopeError("truncated envelope")
        (length,) = _LENGTH.unpack_from(self.buffer, self.position)
        if length == _NONE:
            self.position = end
            return None
        stop = end + length
        if stop > len(self.buffer):
            raise EnvelopeError("truncated envelope")
        self.position = stop
        return self.buffer[end:stop]

    def required(self) -> bytes:
        value = self.optional()
        if value is None:
            raise EnvelopeError("missing field")
        return value

    def text(self) -> str:
        return self.required().decode()

    def optional_text(self) -> str | None:
        value = self.optional()
        return None if value is None else value.decode()


def _head(kind: int, node_id: str) -> list[bytes]:
    parts = [bytes((kind,))]
    _put(parts, node_id.encode())
    return parts


def origin_node(payload: bytes) -> tuple[int, str]:
    """The kind and publishing node of an envelope, without decoding the rest."""
    if not payload:
        raise EnvelopeError("empty envelope")
    reader = _Reader(payload, 1)
    return payload[0], reader.text()


def _body(payload: bytes) -> _Reader:
    reader = _Reader(payload, 1)
    reader.required()  # the node id, read by origin_node
    return reader


def encode_publication(
    node_id: str, publication: Publication, tally: bytes | None = None, *, recorded: bool = False
) -> bytes:
    """``tally``: the publishing node wants every receiving node's count under this token.
    ``recorded``: the head of a RECORDED envelope, to be completed by ``with_position``."""
    parts = _head(RECORDED if recorded else PUBLICATION, node_id)
    _put(parts, publication.app_id.encode())
    _put(parts, publication.channel.encode())
    _put(parts, publication.sender.encode())
    _put(parts, publication.data)
    _put(parts, publication.sender_metadata)
    _put(
        parts,
        None if publication.origin_connection is None else publication.origin_connection.encode(),
    )
    _put(parts, tally)
    return b"".join(parts)


def with_position(head: bytes, position: StreamPosition) -> bytes:
    """Complete a RECORDED envelope head (what the history script does in Lua)."""
    parts = [head]
    _put(parts, str(position.offset).encode())
    _put(parts, position.epoch.encode())
    return b"".join(parts)


def decode_publication(payload: bytes) -> tuple[Publication, bytes | None]:
    r = _body(payload)
    app_id, channel, sender = r.text(), r.text(), r.text()
    data, metadata, origin, tally = r.required(), r.optional(), r.optional_text(), r.optional()
    position = None
    if payload[0] == RECORDED:
        try:
            position = StreamPosition(int(r.text()), r.text())
        except ValueError:
            raise EnvelopeError("bad offset") from None
    return Publication(app_id, channel, sender, data, metadata, origin, position), tally


def encode_direct(node_id: str, direct: Direct) -> bytes:
    parts = _head(DIRECT, node_id)
    _put(parts, direct.app_id.encode())
    _put(parts, direct.to.encode())
    _put(parts, direct.sender.encode())
    _put(parts, direct.data)
    _put(parts, direct.sender_metadata)
    _put(parts, None if direct.origin_connection is None else direct.origin_connection.encode())
    return b"".join(parts)


def decode_direct(payload: bytes) -> Direct:
    r = _body(payload)
    return Direct(r.text(), r.text(), r.text(), r.required(), r.optional(), r.optional_text())


def _put_entries(parts: list[bytes], entries: tuple[PresenceEntry, ...]) -> None:
    _put(parts, str(len(entries)).encode())
    for entry in entries:
        _put(parts, entry.peer_id.encode())
        _put(parts, entry.metadata)


def _entries(reader: _Reader) -> tuple[PresenceEntry, ...]:
    try:
        count = int(reader.text())
    except ValueError:
        raise EnvelopeError("bad entry count") from None
    return tuple(PresenceEntry(reader.text(), reader.optional()) for _ in range(count))


def encode_presence(node_id: str, delta: PresenceDelta) -> bytes:
    parts = _head(PRESENCE, node_id)
    _put(parts, delta.app_id.encode())
    _put(parts, delta.channel.encode())
    _put(parts, delta.subject.encode())
    _put_entries(parts, delta.joined)
    _put_entries(parts, delta.left)
    return b"".join(parts)


def decode_presence(payload: bytes) -> PresenceDelta:
    r = _body(payload)
    return PresenceDelta(r.text(), r.text(), r.text(), _entries(r), _entries(r))


def encode_disconnect(
    node_id: str, app_id: str, peer_id: str, code: int, reason: str, tally: bytes
) -> bytes:
    parts = _head(DISCONNECT, node_id)
    for value in (app_id, peer_id, str(code), reason):
        _put(parts, value.encode())
    _put(parts, tally)
    return b"".join(parts)


def decode_disconnect(payload: bytes) -> tuple[tuple[str, str, int, str], bytes]:
    r = _body(payload)
    app_id, peer_id, code, reason = r.text(), r.text(), r.text(), r.text()
    try:
        return (app_id, peer_id, int(code), reason), r.required()
    except ValueError:
        raise EnvelopeError("bad close code") from None


def tally_of(payload: bytes) -> bytes | None:
    """The tally token of a publication, disconnect or question (None for other kinds)."""
    if payload[:1] in (bytes((PUBLICATION,)), bytes((RECORDED,))):
        return decode_publication(payload)[1]
    if payload[:1] == bytes((DISCONNECT,)):
        return decode_disconnect(payload)[1]
    if payload[:1] == bytes((QUESTION,)):
        return decode_question(payload)[1]
    return None


_query_decoder = msgspec.msgpack.Decoder(NodeQuery)
_answer_decoder = msgspec.msgpack.Decoder(NodeAnswer)


def encode_question(node_id: str, query: NodeQuery, tally: bytes) -> bytes:
    """A listing question to every node; each answers under ``tally``."""
    parts = _head(QUESTION, node_id)
    _put(parts, msgspec.msgpack.encode(query))
    _put(parts, tally)
    return b"".join(parts)


def decode_question(payload: bytes) -> tuple[NodeQuery, bytes]:
    r = _body(payload)
    body, tally = r.required(), r.required()
    try:
        return _query_decoder.decode(body), tally
    except msgspec.DecodeError:
        raise EnvelopeError("bad question") from None


def encode_answer(node_id: str, tally: bytes, answer: NodeAnswer) -> bytes:
    parts = _head(ANSWER, node_id)
    _put(parts, tally)
    _put(parts, msgspec.msgpack.encode(answer))
    return b"".join(parts)


def decode_answer(payload: bytes) -> tuple[bytes, NodeAnswer]:
    r = _body(payload)
    tally, body = r.required(), r.required()
    try:
        return tally, _answer_decoder.decode(body)
    except msgspec.DecodeError:
        raise EnvelopeError("bad answer") from None


def encode_count(node_id: str, tally: bytes, count: int) -> bytes:
    """One receiving node's answer to a tally: how many connections its copy reached."""
    parts = _head(COUNT, node_id)
    _put(parts, tally)
    _put(parts, str(count).encode())
    return b"".join(parts)


def decode_count(payload: bytes) -> tuple[bytes, int]:
    r = _body(payload)
    tally, count = r.required(), r.text()
    try:
        return tally, int(count)
    except ValueError:
        raise EnvelopeError("bad count") from None


def encode_channel_event(node_id: str, event: ChannelEvent) -> bytes:
    """A lifecycle event handed to the node that sends its channel's webhooks."""
    parts = _head(CHANNEL_EVENT, node_id)
    _put(parts, event.name.value.encode())
    _put(parts, event.app_id.encode())
    _put(parts, event.channel.encode())
    _put(parts, None if event.user_id is None else event.user_id.encode())
    _put(parts, event.data)
    _put(parts, None if event.seq is None else str(event.seq).encode())
    return b"".join(parts)


def decode_channel_event(payload: bytes) -> ChannelEvent:
    r = _body(payload)
    raw_name, app_id, channel, user_id, data, seq = (
        r.text(),
        r.text(),
        r.text(),
        r.optional_text(),
        r.optional(),
        r.optional_text(),
    )
    try:
        name = ChannelEventName(raw_name)
        return ChannelEvent(name, app_id, channel, user_id, data, None if seq is None else int(seq))
    except ValueError:
        raise EnvelopeError("bad channel event") from None
