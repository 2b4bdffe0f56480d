"""Checks that the hand-rolled prototype (``raw.py``) does what docs/benchmarks.md says it does.

    .venv/bin/python bench/lean/check_raw.py [raw|sniff]

Starts ``server.py raw`` (or ``sniff``) on a free port and talks to it over plain sockets:
a good upgrade, refused upgrades (400), a fragmented message reassembled, ping -> pong, a
clean close echoed, and the closes for an unmasked frame (1002), RSV bits (1002), a
continuation without a start (1002), a fragmented control frame (1002), invalid UTF-8 (1007)
and an oversized message (1009). Prints one line per check and exits non-zero on a failure.
This is a measurement prototype's sanity check, not a test suite.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
UPGRADE = (
    "GET /v1?token=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
)


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, (0x80 if masked else 0) | length))
    elif length < 65536:
        header = bytes((first, (0x80 if masked else 0) | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, (0x80 if masked else 0) | 127)) + length.to_bytes(8, "big")
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frames(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    data, frames = b"", []
    while len(frames) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        while len(data) >= 2:
            length, start = data[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(data[2:4], "big"), 4
            if len(data) < start + length:
                break
            frames.append((data[0] & 0x0F, data[start : start + length]))
            data = data[start + length :]
    return frames


def opened(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(UPGRADE.format(key=key).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    status, _, rest = head.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101"), status
    welcome = read_frames(sock, 1) if not rest else [(1, rest[2:])]
    assert b'"welcome"' in welcome[0][1], welcome
    return sock


def close_code(sock: socket.socket) -> int | None:
    for opcode, payload in read_frames(sock, 5):
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big")
    return None


def main() -> int:
    impl = sys.argv[1] if len(sys.argv) > 1 else "raw"
    server = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), impl, "0"], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    port = int(re.search(r"listening on (\d+)", server.stdout.readline()).group(1))  # type: ignore[union-attr]
    failures = 0

    def check(name: str, ok: bool) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}")

    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = sock.recv(4096)
        expected = b"HTTP/1.1 400" if impl == "raw" else b"HTTP/1.1 404"  # sniff: aiohttp's
        check("upgrade without the headers is refused", reply.startswith(expected))

        sock = opened(port)
        sub = json.dumps({"type": "subscribe", "channel": "c", "requestId": "1"}).encode()
        sock.sendall(frame(0x1, sub[:10], fin=False) + frame(0x0, sub[10:20], fin=False))
        sock.sendall(frame(0x9, b"hi") + frame(0x0, sub[20:]))
        got = read_frames(sock, 2)
        check("ping inside a fragmented message -> pong", got[0] == (0xA, b"hi"))
        check("fragmented message reassembled (ack)", b'"ack"' in got[1][1])
        sock.sendall(frame(0x8, (1000).to_bytes(2, "big")))
        check("close 1000 echoed", close_code(sock) == 1000)

        for name, data, code in (
            ("unmasked frame", frame(0x1, b"{}", masked=False), 1002),
            ("RSV bit set", frame(0x1, b"{}", rsv=0x40), 1002),
            ("continuation without a start", frame(0x0, b"x"), 1002),
            ("fragmented ping", frame(0x9, b"x", fin=False), 1002),
            ("invalid UTF-8", frame(0x1, b"\xff\xfe"), 1007),
            ("oversized message", frame(0x1, b"x" * 70_000), 1009),
        ):
            sock = opened(port)
            sock.sendall(data)
            check(f"{name} -> close {code}", close_code(sock) == code)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
