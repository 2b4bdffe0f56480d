"""Load generator for bench/cluster.py: many WebSocket subscribers on raw sockets, one epoll loop.

    python bench/subscribers.py <channel> <key> <url>...   (one subscriber per url)

What is measured is the server's publish -> deliver time: delivered means the frame's bytes
reached the subscriber's socket, stamped by the kernel as they arrive (SO_TIMESTAMPNS, on
CLOCK_REALTIME, the clock of the publisher's time.time_ns()). A client's own processing is not
the server's latency, and in production the client is on another machine. Here it shares the
cores with the servers, so it must stay out of their way: an event-loop WebSocket library
costs 20-45 µs of CPU per message when woken for each socket, while this client speaks just
enough RFC 6455 to subscribe and read frames, wakes every few milliseconds to read every socket
that has data (the kernel's stamps make the late read exact), and with ``--idle-priority``
runs only when no server wants the CPU. Its CPU per delivery is reported next to the servers'.
For TCP the stamp is that of the last segment a read returns, so if two frames ever share a
read, the first one's latency is over- rather than under-estimated.

stdin commands, one per line, each answered with one JSON line on stdout:
``report`` (received count and latencies in ns per server URL, then reset), ``count``,
``stop``; each reply also carries this process's CPU seconds so far.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import select
import socket
import struct
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from urllib.parse import urlsplit

STDIN = 0
SO_TIMESTAMPNS = 35  # Linux; the socket module does not export it
TIMESPEC = struct.Struct("qq")
TIMESTAMP = re.compile(rb'"t": ?(\d+)')
OP_TEXT, OP_CLOSE, OP_PING = 0x1, 0x8, 0x9


def masked_frame(opcode: int, payload: bytes) -> bytes:
    # Clients must mask (RFC 6455 §5.3); a zero mask keeps the payload as is and is valid.
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    else:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    return header + b"\0\0\0\0" + payload


class Subscriber:
    __slots__ = ("buffer", "sock", "url")

    def __init__(self, sock: socket.socket, url: str) -> None:
        self.sock = sock
        self.url = url
        self.buffer = b""

    def frames(self, data: bytes) -> list[tuple[int, bytes]]:
        """Complete frames in the buffer plus `data`; a partial frame stays buffered."""
        buffer = self.buffer + data if self.buffer else data
        frames = []
        offset, end = 0, len(buffer)
        while end - offset >= 2:
            opcode, length = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                if end - start < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if end - start < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            if end - start < length:
                break
            frames.append((opcode, buffer[start : start + length]))
            offset = start + length
        self.buffer = buffer[offset:]
        return frames

    def read_frame(self) -> tuple[int, bytes]:
        """Blocking read of the next frame (during the handshake only)."""
        while True:
            frames = self.frames(b"")
            if frames:
                assert len(frames) == 1, "the server sent more than expected"
                return frames[0]
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed during subscribe")
            self.buffer += data


def subscribe(url: str, channel: str, key: str) -> Subscriber:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port or 80))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    nonce = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /v1?key={key} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("server closed during the upgrade")
        head += chunk
    status, _, rest = head.partition(b"\r\n\r\n")
    if not status.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(status.split(b"\r\n", 1)[0].decode())
    subscriber = Subscriber(sock, url)
    subscriber.buffer = rest
    _opcode, payload = subscriber.read_frame()
    assert json.loads(payload)["type"] == "welcome", payload
    request_frame = {"type": "subscribe", "channel": channel, "requestId": "s"}
    sock.sendall(masked_frame(OP_TEXT, json.dumps(request_frame).encode()))
    _opcode, payload = subscriber.read_frame()
    assert json.loads(payload)["type"] == "ack", payload
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    return subscriber


class Recorder:
    """Reads a subscriber's socket and records a latency for every timed frame."""

    def __init__(self) -> None:
        self.received = 0
        self.latencies: dict[str, list[int]] = defaultdict(list)
        self._timestamp_space = socket.CMSG_SPACE(TIMESPEC.size)
        # One reused buffer: a fresh 256 KiB bytes per read is an mmap and page faults each.
        self._buffer = bytearray(1 << 16)
        self._view = memoryview(self._buffer)

    def read(self, subscriber: Subscriber) -> bool:
        """False when the socket had nothing to read."""
        try:
            size, ancillary, _flags, _address = subscriber.sock.recvmsg_into(
                [self._buffer], self._timestamp_space
            )
        except BlockingIOError:
            return False
        if not size:
            raise ConnectionError("a subscriber was disconnected by the server")
        arrived = arrival_ns(ancillary)
        latencies = self.latencies[subscriber.url]
        for opcode, payload in subscriber.frames(bytes(self._view[:size])):
            if opcode == OP_TEXT:
                self.received += 1
                stamp = TIMESTAMP.search(payload)
                if stamp is not None:
                    latencies.append(arrived - int(stamp[1]))
            elif opcode == OP_PING:
                subscriber.sock.send(masked_frame(0xA, payload))
            elif opcode == OP_CLOSE:
                raise ConnectionError(f"closed by the server: {payload!r}")
        return True

    def answer(self, command: str) -> None:
        reply: dict[str, object] = {"received": self.received, "cpu_s": time.process_time()}
        if command == "report":
            reply["latencies"] = self.latencies
            self.received, self.latencies = 0, defaultdict(list)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def commands() -> Iterator[str | None]:
    """Each command line from stdin once it is complete; None while there is none."""
    pending = b""
    while True:
        if not select.select([STDIN], [], [], 0)[0]:
            yield None
            continue
        chunk = os.read(STDIN, 4096)
        if not chunk:
            yield "stop"
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line.decode().strip() or "stop"


def serve(subscribers: list[Subscriber], read_pause_s: float) -> None:
    recorder = Recorder()
    poller = select.epoll()
    by_fd = {s.sock.fileno(): s for s in subscribers}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    poller.register(STDIN, select.EPOLLIN)
    incoming = commands()
    while True:
        for fd, _events in poller.poll():
            if fd != STDIN:
                recorder.read(by_fd[fd])
        command = next(incoming)
        while command is not None:
            if command == "stop":
                return
            recorder.answer(command)
            command = next(incoming)
        # The kernel has stamped each arrival already, so reading a little later costs no
        # accuracy, and one wake-up then reads many sockets instead of one or two.
        time.sleep(read_pause_s)


def arrival_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = TIMESPEC.unpack(data)
            return seconds * 1_000_000_000 + nanoseconds
    raise RuntimeError("the kernel gave no receive timestamp")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--read-pause-ms", type=float, default=2.0)
    parser.add_argument("--idle-priority", action="store_true")
    parser.add_argument("channel")
    parser.add_argument("key")
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    subscribers = [subscribe(url, args.channel, args.key) for url in args.urls]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        if args.idle_priority:
            # Run only on a core the servers leave idle: this process is the measuring
            # instrument, and on a shared machine it must not be what it measures.
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        serve(subscribers, args.read_pause_ms / 1000)
    finally:
        for subscriber in subscribers:
            subscriber.sock.close()


if __name__ == "__main__":
    main()
