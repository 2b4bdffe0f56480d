"""WebSocketOutbox on a real event loop with a fake transport: coalescing, pauses, slow consumers.

No sockets: the transport records writes, and the WebSocket's ``close`` records its code.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from hubbub.core.outbound import OutFrame
from hubbub.transports.ws_outbox import OutboxFlusher, WebSocketOutbox, encode_text_frame

PAUSE_S = 0.002


@dataclass
class FakeTransport:
    """Records writes; a half-close is answered by the peer's EOF at once (a polite peer).
    The close procedure over real sockets is tested in test_ws_close.py."""

    writes: list[bytes] = field(default_factory=list)
    buffered: int = 0  # what get_write_buffer_size reports
    closing: bool = False
    wrote: asyncio.Event = field(default_factory=asyncio.Event)
    protocol: asyncio.BaseProtocol = field(default_factory=asyncio.Protocol)
    eof_written: bool = False
    aborted: bool = False

    def write(self, data: bytes) -> None:
        assert not self.eof_written, "nothing may be written after the half-close"
        self.writes.append(data)
        self.wrote.set()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def is_reading(self) -> bool:
        return True

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True
        protocol = self.protocol
        assert isinstance(protocol, asyncio.Protocol)
        asyncio.get_running_loop().call_soon(protocol.eof_received)

    def close(self) -> None:
        self._lose()

    def abort(self) -> None:
        self.aborted = True
        self._lose()

    def _lose(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing

    async def next_write(self, count: int) -> None:
        """Wait (bounded) until ``count`` writes have happened."""
        async with asyncio.timeout(2):
            while len(self.writes) < count:
                self.wrote.clear()
                await self.wrote.wait()


@dataclass
class FakeWebSocket:
    closes: list[tuple[int, bytes]] = field(default_factory=list)

    async def close(self, *, code: int, message: bytes) -> bool:
        self.closes.append((code, message))
        return True


def unframe(data: bytes) -> list[bytes]:
    """Split a run of unmasked text frames back into payloads."""
    payloads = []
    while data:
        assert data[0] == 0x81
        length, offset = data[1], 2
        if length == 126:
            length, offset = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, offset = int.from_bytes(data[2:10], "big"), 10
        payloads.append(data[offset : offset + length])
        data = data[offset + length :]
    return payloads


async def make_outbox(
    max_pending_bytes: int = 1 << 20,
) -> tuple[WebSocketOutbox, FakeTransport, FakeWebSocket]:
    loop = asyncio.get_running_loop()
    transport, ws = FakeTransport(), FakeWebSocket()
    outbox = WebSocketOutbox(
        ws,  # type: ignore[arg-type]
        transport,  # type: ignore[arg-type]
        OutboxFlusher(loop),
        loop,
        max_pending_bytes=max_pending_bytes,
        pause_s=PAUSE_S,
    )
    return outbox, transport, ws


async def settle() -> None:
    """Let call_soon callbacks run (a few loop iterations, no timers)."""
    for _ in range(3):
        await asyncio.sleep(0)


def frame(text: str) -> OutFrame:
    return OutFrame(text.encode())


# --- encode_text_frame ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_encode_text_frame_length_forms(length: int, header: bytes) -> None:
    payload = b"x" * length
    encoded = encode_text_frame(payload)
    assert encoded == header + payload
    assert unframe(encoded) == [payload]


def test_out_frame_encodes_once_and_shares_the_bytes() -> None:
    out = frame('{"type":"pong"}')
    first = out.wire(encode_text_frame)
    assert out.wire(encode_text_frame) is first
    assert out.wire(lambda payload: b"other:" + payload) == b'other:{"type":"pong"}'


# --- coalescing and pauses --------------------------------------------------------------------


async def test_frames_pushed_in_one_iteration_become_one_write() -> None:
    outbox, transport, _ = await make_outbox()
    for i in range(3):
        outbox.push(frame(f'{{"n":{i}}}'))
    assert transport.writes == []  # nothing written synchronously
    await transport.next_write(1)
    await settle()
    assert len(transport.writes) == 1
    assert unframe(transport.writes[0]) == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    outbox.push(frame('{"n":3}'))
    await transport.next_write(2)
    assert unframe(transport.writes[1]) == [b'{"n":3}']


async def test_one_flush_serves_every_dirty_outbox() -> None:
    loop = asyncio.get_running_loop()
    flusher = OutboxFlusher(loop)
    pairs = []
    for _ in range(3):
        transport, ws = FakeTransport(), FakeWebSocket()
        outbox = WebSocketOutbox(
            ws,  # type: ignore[arg-type]
            transport,  # type: ignore[arg-type]
            flusher,
            loop,
            max_pending_bytes=1 << 20,
            pause_s=PAUSE_S,
        )
        pairs.append((outbox, transport))
    shared = frame('{"type":"message"}')
    for outbox, _ in pairs:
        outbox.push(shared)
    await settle()
    writes = [transport.writes for _, transport in pairs]
    assert writes == [[encode_text_frame(shared.payload)]] * 3
    assert writes[0][0] is writes[1][0]  # the same bytes object went to every transport


async def test_snapshot_comes_in_a_separate_write_after_the_ack() -> None:
    outbox, transport, _ = await make_outbox()
    outbox.push(frame("ack"))
    outbox.push_after_pause(frame("snapshot"))
    outbox.push(frame("later"))
    await transport.next_write(2)
    await settle()
    assert [unframe(w) for w in transport.writes] == [[b"ack"], [b"snapshot", b"later"]]


async def test_several_pauses_in_a_row_keep_order_and_separate_each_snapshot() -> None:
    outbox, transport, _ = await make_outbox()
    outbox.push(frame("ack1"))
    outbox.push_after_pause(frame("snap1"))
    outbox.push(frame("ack2"))
    outbox.push_after_pause(frame("snap2"))
    outbox.push(frame("delta"))
    await transport.next_write(3)
    await settle()
    writes = [unframe(w) for w in transport.writes]
    # Order is kept, and every snapshot starts a new write, one pause after what preceded it.
    assert [p for w in writes for p in w] == [b"ack1", b"snap1", b"ack2", b"snap2", b"delta"]
    assert writes == [[b"ack1"], [b"snap1", b"ack2"], [b"snap2", b"delta"]]
    for payload in (b"snap1", b"snap2"):
        assert any(w[0] == payload for w in writes)


async def test_a_pause_with_nothing_before_it_still_waits() -> None:
    outbox, transport, _ = await make_outbox()
    outbox.push_after_pause(frame("snap"))
    await settle()
    assert transport.writes == []
    await transport.next_write(1)
    assert unframe(transport.writes[0]) == [b"snap"]


# --- close and slow consumers -----------------------------------------------------------------


def close_frame(code: int, reason: str) -> bytes:
    payload = code.to_bytes(2, "big") + reason.encode()
    return bytes((0x88, len(payload))) + payload


async def test_close_flushes_everything_queued_then_the_close_frame() -> None:
    outbox, transport, _ = await make_outbox()
    started = []
    outbox.on_close_started = lambda: started.append(len(transport.writes))
    outbox.push(frame("a"))
    outbox.push_after_pause(frame("b"))
    outbox.push(frame("c"))
    outbox.close(4011, "over message rate")
    assert started == [0], "the release hook runs first, before anything is written"
    outbox.push(frame("dropped"))
    outbox.push_after_pause(frame("dropped"))
    outbox.close(1000, "second close is ignored")
    async with asyncio.timeout(2):
        await outbox.closed
    assert len(transport.writes) == 1
    written = transport.writes[0]
    tail = close_frame(4011, "over message rate")
    assert written.endswith(tail)
    assert unframe(written[: -len(tail)]) == [b"a", b"b", b"c"]
    assert transport.eof_written and not transport.aborted
    assert (outbox.closing, outbox.close_code) == (True, 4011)


async def test_slow_consumer_when_the_transport_buffer_passes_the_mark() -> None:
    outbox, transport, _ = await make_outbox(max_pending_bytes=100)
    transport.buffered = 101
    outbox.push(frame("x"))
    await transport.next_write(1)
    assert outbox.close_code == 1008
    assert transport.writes[-1] == close_frame(1008, "slow consumer")
    outbox.push(frame("after"))
    await settle()
    assert len(transport.writes) == 2
    # The close frame cannot leave (the buffer never empties): aborted at the send deadline.
    outbox.abort()
    assert transport.aborted
    async with asyncio.timeout(2):
        await outbox.closed


async def test_slow_consumer_when_queued_bytes_pass_the_mark() -> None:
    outbox, transport, _ = await make_outbox(max_pending_bytes=50)
    outbox.push(frame("a" * 20))
    outbox.push_after_pause(frame("b" * 20))
    assert not outbox.closing
    outbox.push(frame("c" * 20))  # 3 x 22 bytes queued > 50
    async with asyncio.timeout(2):
        await outbox.closed
    # The backlog is dropped, not written: only the close frame goes out.
    assert transport.writes == [close_frame(1008, "slow consumer")]


async def test_at_the_mark_is_not_slow() -> None:
    payload = "a" * 48  # 50 bytes framed
    outbox, transport, _ = await make_outbox(max_pending_bytes=50)
    transport.buffered = 50
    outbox.push(frame(payload))
    await transport.next_write(1)
    await settle()
    assert not outbox.closing


async def test_zero_disables_the_slow_consumer_check() -> None:
    outbox, transport, _ = await make_outbox(max_pending_bytes=0)
    transport.buffered = 10**9
    for _ in range(100):
        outbox.push(frame("x" * 1000))
    await transport.next_write(1)
    await settle()
    assert not outbox.closing


async def test_nothing_is_written_to_a_closing_transport() -> None:
    outbox, transport, _ = await make_outbox(max_pending_bytes=30)
    transport.closing = True
    for _ in range(5):  # 5 x 22 bytes over several iterations: none of it stays pending
        outbox.push(frame("x" * 20))
        await settle()
    assert transport.writes == []
    assert not outbox.closing


async def test_closed_resolves_when_the_transport_is_already_gone() -> None:
    outbox, transport, _ = await make_outbox()
    transport.closing = True
    outbox.close(1001, "server going away")
    async with asyncio.timeout(2):
        await outbox.closed
    assert transport.writes == []
