"""LingeringClose over real sockets (socketpair, no ports): the close frame reaches the peer,
the write side is half-closed, input is discarded until EOF, and deadlines abort."""

from __future__ import annotations

import asyncio
import socket

from hubbub.protocol.close_procedure import CloseTimeouts, encode_close_frame
from hubbub.transports.ws_close import LingeringClose

FAST = CloseTimeouts(send_timeout_s=0.3, linger_s=0.3)


class RecordingProtocol(asyncio.Protocol):
    """The protocol a close takes over from (stands for aiohttp's request handler)."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def server_side(
    timeouts: CloseTimeouts = FAST,
) -> tuple[LingeringClose, RecordingProtocol, socket.socket, asyncio.Transport]:
    ours, peer = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(RecordingProtocol, sock=ours)
    peer.setblocking(False)
    return LingeringClose(transport, loop, timeouts), protocol, peer, transport


async def read_until_eof(peer: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while chunk := await loop.sock_recv(peer, 1 << 16):
        data += chunk
    return data


async def test_a_polite_peer_gets_pending_then_the_frame_then_eof_and_the_close_is_clean() -> None:
    close, inner, peer, _transport = await server_side(CloseTimeouts(5.0, 5.0))
    close.take_over()
    close.begin(4011, "over message rate", b"queued-before")
    async with asyncio.timeout(5):
        received = await read_until_eof(peer)  # EOF: the server half-closed
    assert received == b"queued-before" + encode_close_frame(4011, "over message rate")
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(peer, b"late input, discarded" * 100)
    peer.shutdown(socket.SHUT_WR)
    async with asyncio.timeout(5):
        await close.done
        assert await inner.lost is None  # the old protocol still hears the end
    assert close.discarded_bytes == len(b"late input, discarded") * 100
    assert inner.received == b""  # nothing reached the old protocol after the take-over
    peer.close()


async def test_a_peer_that_keeps_sending_is_aborted_at_the_linger_deadline() -> None:
    close, _inner, peer, _ = await server_side()
    close.take_over()
    loop = asyncio.get_running_loop()
    close.begin(1009, "message too big")
    start = loop.time()
    sending = True

    async def flood() -> None:
        while sending:
            try:
                await loop.sock_sendall(peer, b"x" * 65536)
            except OSError:
                return

    flooder = asyncio.create_task(flood())
    async with asyncio.timeout(5):
        await close.done
    sending = False
    elapsed = loop.time() - start
    assert FAST.linger_s * 0.9 <= elapsed < FAST.worst_case_s + 1.0
    assert close.discarded_bytes > 0
    # The peer got the close frame before anything else happened.
    first = peer.recv(4)
    assert first == encode_close_frame(1009, "message too big")[:4]
    flooder.cancel()
    peer.close()


async def test_a_peer_that_never_reads_is_aborted_at_the_send_deadline() -> None:
    close, inner, peer, transport = await server_side()
    close.take_over()
    loop = asyncio.get_running_loop()
    start = loop.time()
    close.begin(1008, "slow consumer", b"y" * (16 << 20))  # far more than socket buffers
    assert transport.get_write_buffer_size() > 0
    async with asyncio.timeout(5):
        await close.done
        await inner.lost
    elapsed = loop.time() - start
    assert FAST.send_timeout_s * 0.9 <= elapsed < FAST.send_timeout_s + 1.0
    assert transport.is_closing()
    peer.close()


async def test_a_transport_already_gone_finishes_at_once() -> None:
    close, _inner, peer, transport = await server_side()
    transport.abort()
    close.take_over()
    close.begin(1000, "")
    async with asyncio.timeout(1):
        await close.done
    peer.close()


async def test_abort_ends_a_lingering_close_immediately() -> None:
    close, inner, peer, _ = await server_side(CloseTimeouts(30.0, 30.0))
    close.take_over()
    close.begin(1001, "server going away")
    close.abort()
    async with asyncio.timeout(1):
        await close.done
        await inner.lost
    peer.close()
