"""protocol/websocket.py: the upgrade head, the accept key, server frames, and the frame
reader's answer to every RFC 6455 rule it enforces, plus a Hypothesis fuzz of the reader."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.protocol.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    Event,
    FrameReader,
    Message,
    Ping,
    Pong,
    UpgradeRefusal,
    UpgradeRequest,
    Violation,
    accept_response,
    close_frame,
    encode_frame,
    http_response,
    parse_upgrade,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3


def head(*lines: str, target: str = "/v1?key=pk_live_demo") -> bytes:
    base = [
        f"GET {target} HTTP/1.1",
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    return "\r\n".join([*base, *lines]).encode()


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """A frame as a client sends it (masked), built independently of the reader."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def events(data: bytes, limit: int = 1024, chunk: int | None = None) -> list[Event]:
    reader = FrameReader(limit)
    out: list[Event] = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        reader.feed(piece)
        while (event := reader.next_event()) is not None:
            out.append(event)
    return out


# --- the upgrade ----------------------------------------------------------------------------


def test_a_valid_upgrade_is_parsed() -> None:
    request = parse_upgrade(
        head("Origin: https://a.example", "X-Forwarded-For: 1.2.3.4", "Cookie: a=1", "cookie: b=2")
    )
    assert isinstance(request, UpgradeRequest)
    assert request.path == "/v1"
    assert request.query == {"key": "pk_live_demo"}
    assert request.origin == "https://a.example"
    assert request.forwarded_for == "1.2.3.4"
    assert request.headers["cookie"] == "a=1; b=2"


def test_the_query_is_decoded_like_a_form_and_the_first_value_wins() -> None:
    request = parse_upgrade(head(target="/v1?token=a%2Bb+c&token=second&empty="))
    assert isinstance(request, UpgradeRequest)
    assert request.query == {"token": "a+b c", "empty": ""}


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (head().replace(b"GET", b"POST"), 405),
        (head().replace(b"Upgrade: websocket", b"Upgrade: h2c"), 426),
        (head().replace(b"Connection: Upgrade", b"Connection: keep-alive"), 426),
        (head().replace(b"Version: 13", b"Version: 8"), 400),
        (head().replace(KEY.encode(), b"short"), 400),
        (head().replace(KEY.encode(), base64.b64encode(b"x" * 15)), 400),
        (head().replace(b"HTTP/1.1", b"HTTP/1.0"), 400),
        (head("no colon here"), 400),
        (b"GARBAGE", 400),
    ],
)
def test_bad_upgrades_are_refused_with_a_status(raw: bytes, status: int) -> None:
    refusal = parse_upgrade(raw)
    assert isinstance(refusal, UpgradeRefusal) and refusal.status == status


def test_the_accept_key_is_the_rfc_example() -> None:
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in accept_response(KEY)
    assert accept_response(KEY).startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


def test_http_responses_carry_their_body_and_end_the_connection() -> None:
    response = http_response(429, "too_many_connections")
    assert response.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert response.endswith(b"\r\n\r\ntoo_many_connections")
    assert b"Content-Length: 20\r\n" in response and b"Connection: close\r\n" in response


# --- server frames --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header_len"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)]
)
def test_server_frames_are_unmasked_with_the_right_length_form(
    length: int, header_len: int
) -> None:
    frame = encode_frame(b"x" * length)
    assert frame[0] == 0x81 and not frame[1] & 0x80
    assert len(frame) == header_len + length


def test_a_close_reason_is_cut_to_fit_on_a_character() -> None:
    frame = close_frame(1008, "é" * 100)
    assert len(frame) <= 127
    assert frame[2:4] == (1008).to_bytes(2, "big")
    frame[4:].decode()  # still UTF-8


# --- the reader -----------------------------------------------------------------------------


def test_text_binary_ping_pong_and_close_in_one_read() -> None:
    data = (
        client_frame(OP_TEXT, b'{"type":"ping"}')
        + client_frame(OP_BINARY, b"\x00\xff")
        + client_frame(OP_PING, b"hi")
        + client_frame(OP_PONG, b"")
        + client_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye")
    )
    assert events(data) == [
        Message(True, b'{"type":"ping"}'),
        Message(False, b"\x00\xff"),
        Ping(b"hi"),
        Pong(b""),
        Close(1000, "bye"),
    ]


def test_frames_split_at_every_byte_give_the_same_events() -> None:
    data = client_frame(OP_TEXT, b"a" * 300) + client_frame(OP_TEXT, b"b")
    assert events(data, chunk=1) == [Message(True, b"a" * 300), Message(True, b"b")]


def test_a_fragmented_message_is_reassembled_around_a_control_frame() -> None:
    data = (
        client_frame(OP_TEXT, b"he", fin=False)
        + client_frame(OP_PING, b"")
        + client_frame(OP_CONTINUATION, b"ll", fin=False)
        + client_frame(OP_CONTINUATION, b"o")
    )
    assert events(data) == [Ping(b""), Message(True, b"hello")]


def test_an_empty_close_is_1005() -> None:
    assert events(client_frame(OP_CLOSE, b"")) == [Close(1005, "")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(OP_TEXT, b"x", masked=False), 1002),
        (client_frame(OP_TEXT, b"x", rsv=1), 1002),
        (client_frame(0x3, b"x"), 1002),
        (client_frame(0xB, b"x"), 1002),
        (client_frame(OP_PING, b"x", fin=False), 1002),
        (client_frame(OP_PING, b"x" * 126), 1002),
        (client_frame(OP_CONTINUATION, b"x"), 1002),
        (client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"), 1002),
        (client_frame(OP_TEXT, b"\xff\xfe"), 1007),
        (client_frame(OP_TEXT, b"\xe2\x82", fin=False) + client_frame(OP_CONTINUATION, b"x"), 1007),
        (client_frame(OP_TEXT, b"x" * 1025), 1009),
        (
            client_frame(OP_TEXT, b"x" * 600, fin=False)
            + client_frame(OP_CONTINUATION, b"x" * 600),
            1009,
        ),
        (client_frame(OP_CLOSE, b"\x03"), 1002),
        (client_frame(OP_CLOSE, (1005).to_bytes(2, "big")), 1002),
        (client_frame(OP_CLOSE, (999).to_bytes(2, "big")), 1002),
        (client_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
    ],
)
def test_violations_name_their_close_code(data: bytes, code: int) -> None:
    found = events(data)
    assert len(found) == 1 and isinstance(found[0], Violation), found
    assert found[0].close_code == code


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    reader = FrameReader(1024)
    reader.feed(client_frame(OP_TEXT, b"x" * 70000)[:14])  # the payload never arrives
    event = reader.next_event()
    assert isinstance(event, Violation) and event.close_code == 1009


def test_nothing_is_read_after_a_violation_or_a_close() -> None:
    data = client_frame(OP_TEXT, b"x", masked=False) + client_frame(OP_TEXT, b"y")
    assert [type(e) for e in events(data)] == [Violation]
    data = client_frame(OP_CLOSE, b"") + client_frame(OP_TEXT, b"y")
    assert events(data) == [Close(1005, "")]


def test_no_limit_when_the_bound_is_zero() -> None:
    assert events(client_frame(OP_TEXT, b"x" * 70000), limit=0) == [Message(True, b"x" * 70000)]


def test_the_buffer_holds_only_an_incomplete_frame() -> None:
    reader = FrameReader(1024)
    reader.feed(client_frame(OP_TEXT, b"abc") + client_frame(OP_TEXT, b"def")[:3])
    assert reader.next_event() == Message(True, b"abc")
    assert reader.next_event() is None
    assert reader.buffered == 3


# --- fuzz -----------------------------------------------------------------------------------

frames = st.builds(
    client_frame,
    st.sampled_from([OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, 0x3, 0xB]),
    st.binary(max_size=300),
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 1, 4]),
    masked=st.sampled_from([True, True, True, False]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(frames, max_size=8), st.integers(1, 64), st.binary(max_size=40))
def test_the_reader_never_raises_and_chunking_never_changes_its_events(
    stream: list[bytes], chunk: int, tail: bytes
) -> None:
    data = b"".join(stream) + tail
    whole = events(data, limit=256)
    assert events(data, limit=256, chunk=chunk) == whole
    # At most one terminal event, and it is the last.
    terminal = [i for i, e in enumerate(whole) if isinstance(e, Violation | Close)]
    assert terminal in ([], [len(whole) - 1])
    for event in whole:
        if isinstance(event, Message):
            assert len(event.payload) <= 256
            if event.text:
                event.payload.decode()
        if isinstance(event, Ping | Pong):
            assert len(event.payload) <= 125


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    events(data, limit=64)
