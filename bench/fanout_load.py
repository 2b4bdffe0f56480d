"""Load generator for ``bench/fanout.py``: many subscribers and one publisher in one process.

Run by the orchestrator (pinned to its own CPU), never by hand, though it works standalone:

    python bench/fanout_load.py --url ws://127.0.0.1:8080/v1?key=pk --subscribers 1000

It prints progress on stderr and one JSON object with the results on stdout.

The clients are written against asyncio protocols (on uvloop) instead of a WebSocket library
because the load generator must not be the bottleneck: while counting, a subscriber does no
per-message task switch or allocation, it scans frame headers in the bytes each read returns
and counts the ``message`` frames in place (about 1 µs of CPU per delivery, against ~2 µs for
Node's ``ws`` client and ~5 µs for aiohttp's; docs/benchmarks.md). Server frames are unmasked
and unfragmented for this traffic (both servers measured write whole frames), which is all this
client supports.

Phases, on one channel:

1. *throughput*: the publisher sends ``--messages`` publishes, keeping at most ``--window``
   unacknowledged; every subscriber must receive every message. deliveries/s = received /
   (last delivery - first publish); loss = deliveries expected but not received.
2. *latency*: the publisher sends at a fixed ``--rate`` for ``--latency-seconds``; each message
   carries its send time (``time.perf_counter()``, the same clock the receivers read), so
   publish -> deliver latency is measured in this one process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

import uvloop

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MESSAGE_PREFIX = b'{"type":"message"'
STAMP_KEY = b'"t":'
OP_TEXT, OP_CLOSE, OP_PING = 0x1, 0x8, 0x9
CLK_TCK = os.sysconf("SC_CLK_TCK")


def masked_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A client frame: final, masked with a fresh key (RFC 6455 section 5.3)."""
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


@dataclasses.dataclass
class Tally:
    """Deliveries across all subscribers, so the phase can end the moment the last one lands."""

    target: int = 0
    received: int = 0
    last_at: float = 0.0
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    # Set during the latency phase: seconds from publish to delivery, one entry per delivery.
    latencies: list[float] | None = None

    def reset(self, target: int) -> None:
        self.target, self.received, self.last_at = target, 0, 0.0
        self.done = asyncio.Event()


class RawWebSocket(asyncio.Protocol):
    """A minimal WebSocket client: handshake, then count ``message`` frames, queue the rest."""

    def __init__(self, tally: Tally, host_header: str, path: str) -> None:
        loop = asyncio.get_running_loop()
        self.tally = tally
        self.messages = 0
        self.other_frames: asyncio.Queue[bytes] = asyncio.Queue()
        # When set, non-message frames go here instead of the queue (the publisher's acks).
        self.on_other: Callable[[bytes], None] | None = None
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._key = base64.b64encode(os.urandom(16))
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\n\r\n"
        ).encode()
        self._buffer = b""
        self._is_upgraded = False
        self._pending_writes: list[bytes] = []
        self._reading = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed during handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, frame: bytes) -> None:
        """Write a ready-made frame; writes made while handling a read go out as one."""
        if self._reading:
            self._pending_writes.append(frame)
        elif self.transport is not None:
            self.transport.write(frame)

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
            self.upgraded.set_exception(ConnectionError(f"upgrade refused: {status}"))
            if self.transport is not None:
                self.transport.close()
            return b""
        self._is_upgraded = True
        self.upgraded.set_result(None)
        return rest

    def data_received(self, data: bytes) -> None:
        if not self._is_upgraded:
            data = self._finish_handshake(data)
            if not data:
                return
        buf = self._buffer + data if self._buffer else data
        end = len(buf)
        pos = 0
        counted = 0
        latencies = self.tally.latencies
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
            if opcode == OP_TEXT:
                if buf.startswith(MESSAGE_PREFIX, start):
                    counted += 1
                    if latencies is not None:
                        stamp = buf.index(STAMP_KEY, start, stop) + len(STAMP_KEY)
                        finish = buf.index(b"}", stamp, stop)
                        comma = buf.find(b",", stamp, finish)
                        sent_at = float(buf[stamp : finish if comma < 0 else comma])
                        latencies.append(now - sent_at)
                elif self.on_other is not None:
                    self.on_other(buf[start:stop])
                else:
                    self.other_frames.put_nowait(buf[start:stop])
            elif opcode == OP_PING:
                self.send(masked_frame(buf[start:stop], 0xA))
            elif opcode == OP_CLOSE:
                self.send(masked_frame(buf[start : start + 2], OP_CLOSE))
        self._reading = False
        self._buffer = buf[pos:] if pos < end else b""
        if self._pending_writes and self.transport is not None:
            self.transport.write(b"".join(self._pending_writes))
            self._pending_writes.clear()
        if counted:
            self.messages += counted
            tally = self.tally
            tally.received += counted
            tally.last_at = now
            if tally.received >= tally.target:
                tally.done.set()


async def connect(
    url: str, tally: Tally, timeout_s: float
) -> tuple[RawWebSocket, dict[str, object]]:
    """Open a connection and return it with its ``welcome`` frame."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        _, client = await loop.create_connection(
            lambda: RawWebSocket(tally, f"{host}:{port}", path or "/"), host, port
        )
        await client.upgraded
        welcome = json.loads(await client.other_frames.get())
    if welcome.get("type") != "welcome":
        raise ConnectionError(f"expected a welcome, got {welcome}")
    return client, welcome


async def request(client: RawWebSocket, frame: dict[str, object], timeout_s: float) -> None:
    """Send a frame with a requestId and wait for its ack (anything else is a failure)."""
    client.send(masked_frame(json.dumps(frame, separators=(",", ":")).encode()))
    async with asyncio.timeout(timeout_s):
        while True:
            reply = json.loads(await client.other_frames.get())
            if reply.get("type") == "ack" and reply.get("requestId") == frame["requestId"]:
                return
            if reply.get("type") == "error":
                raise RuntimeError(f"{frame['type']} refused: {reply}")


async def open_subscribers(
    url: str, channel: str, count: int, tally: Tally, timeout_s: float
) -> list[RawWebSocket]:
    gate = asyncio.Semaphore(64)

    async def one(index: int) -> RawWebSocket:
        async with gate:
            client, _ = await connect(url, tally, timeout_s)
            subscribe = {"type": "subscribe", "channel": channel, "requestId": f"s{index}"}
            await request(client, subscribe, timeout_s)
            return client

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def publish_frame(channel: str, seq: int, sent_at: float, pad: str) -> bytes:
    # ``t`` comes last in ``data`` so a receiver finds it with one search; ``pad`` brings the
    # delivered frame to roughly the ~110-byte message of the design notes' measurement.
    payload = (
        f'{{"type":"publish","channel":"{channel}","requestId":"p{seq}",'
        f'"data":{{"seq":{seq},"pad":"{pad}","t":{sent_at!r}}}}}'
    )
    return masked_frame(payload.encode())


def cpu_busy_ticks(cpus: list[int]) -> list[tuple[int, int]]:
    """(busy, total) jiffies per CPU from /proc/stat; busy includes irq and softirq time,
    where the kernel's loopback TCP work lands without being charged to any process."""
    wanted = {f"cpu{n}": i for i, n in enumerate(cpus)}
    found: list[tuple[int, int]] = [(0, 0)] * len(cpus)
    with open("/proc/stat") as stat:
        for line in stat:
            name, *values = line.split()
            if name in wanted:
                ticks = [int(v) for v in values[:8]]
                idle = ticks[3] + ticks[4]
                found[wanted[name]] = (sum(ticks) - idle, sum(ticks))
    return found


def cpu_busy_share(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> list[float]:
    return [
        (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        for (b0, t0), (b1, t1) in zip(before, after, strict=True)
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclasses.dataclass
class ThroughputResult:
    messages: int
    deliveries: int
    loss: int
    duplicates: int
    short_subscribers: int
    elapsed_s: float
    server_cpu: float  # CPU time of the server process / elapsed
    load_cpu: float  # the same for this process
    cpu_busy: list[float]  # busy share of each watched CPU, interrupts included

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def run_throughput(
    publisher: RawWebSocket,
    subscribers: list[RawWebSocket],
    tally: Tally,
    *,
    channel: str,
    messages: int,
    window: int,
    server_pid: int | None,
    watch_cpus: list[int],
    timeout_s: float,
) -> ThroughputResult:
    for sub in subscribers:
        sub.messages = 0
    tally.reset(messages * len(subscribers))
    frames = [publish_frame(channel, seq, 0.0, "x" * 24) for seq in range(messages)]
    sent = 0
    acked = 0
    all_acked = asyncio.get_running_loop().create_future()

    def on_reply(frame: bytes) -> None:
        nonlocal sent, acked
        if not frame.startswith(b'{"type":"ack"'):
            if not all_acked.done():
                all_acked.set_exception(RuntimeError(f"publish refused: {frame[:200]!r}"))
            return
        acked += 1
        if sent < messages:
            publisher.send(frames[sent])
            sent += 1
        elif acked == messages and not all_acked.done():
            all_acked.set_result(None)

    publisher.on_other = on_reply
    server_cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    load_cpu_before = time.process_time()
    busy_before = cpu_busy_ticks(watch_cpus)
    started = time.perf_counter()
    sent = min(window, messages)
    publisher.send(b"".join(frames[:sent]))
    try:
        async with asyncio.timeout(timeout_s):
            await all_acked
            await tally.done.wait()
    except TimeoutError:
        print(f"throughput: timed out after {timeout_s:.0f} s", file=sys.stderr)
    finally:
        publisher.on_other = None
    finished = tally.last_at or time.perf_counter()
    elapsed = finished - started
    server_cpu = (cpu_seconds(server_pid) - server_cpu_before) if server_pid else 0.0
    load_cpu = time.process_time() - load_cpu_before
    busy = cpu_busy_share(busy_before, cpu_busy_ticks(watch_cpus))
    counts = [sub.messages for sub in subscribers]
    return ThroughputResult(
        messages=messages,
        deliveries=sum(counts),
        loss=sum(max(0, messages - c) for c in counts),
        duplicates=sum(max(0, c - messages) for c in counts),
        short_subscribers=sum(1 for c in counts if c < messages),
        elapsed_s=elapsed,
        server_cpu=server_cpu / elapsed if elapsed > 0 else 0.0,
        load_cpu=load_cpu / elapsed if elapsed > 0 else 0.0,
        cpu_busy=busy,
    )


async def run_latency(
    publisher: RawWebSocket,
    subscribers: list[RawWebSocket],
    tally: Tally,
    *,
    channel: str,
    rate: float,
    seconds: float,
    watch_cpus: list[int],
    timeout_s: float,
) -> dict[str, object]:
    count = max(1, int(rate * seconds))
    tally.reset(count * len(subscribers))
    latencies: list[float] = []
    tally.latencies = latencies
    publisher.on_other = lambda frame: None  # acks are not what this phase measures
    busy_before = cpu_busy_ticks(watch_cpus)
    started = time.perf_counter()
    try:
        for seq in range(count):
            # Pace against the start time so one late wake-up does not shift the rest.
            delay = started + seq / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            publisher.send(publish_frame(channel, seq, time.perf_counter(), "x" * 24))
        async with asyncio.timeout(timeout_s):
            await tally.done.wait()
    except TimeoutError:
        print("latency: timed out waiting for deliveries", file=sys.stderr)
    finally:
        tally.latencies = None
        publisher.on_other = None
    busy = cpu_busy_share(busy_before, cpu_busy_ticks(watch_cpus))
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000.0

    return {
        "messages": count,
        "deliveries": len(latencies),
        "loss": count * len(subscribers) - len(latencies),
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "max_ms": latencies[-1] * 1000.0 if latencies else float("nan"),
        "cpu_busy": busy,
    }


async def main(args: argparse.Namespace) -> dict[str, object]:
    tally = Tally()
    watch = [int(n) for n in args.watch_cpus.split(",") if n]
    began = time.perf_counter()
    subscribers = await open_subscribers(
        args.url, args.channel, args.subscribers, tally, args.timeout
    )
    publisher, _ = await connect(args.url, tally, args.timeout)
    log(f"{len(subscribers)} subscribers ready in {time.perf_counter() - began:.1f} s")
    try:
        phases = (("warm-up", args.warmup, None), ("throughput", args.messages, args.server_pid))
        for phase, messages, server_pid in phases:
            result = await run_throughput(
                publisher,
                subscribers,
                tally,
                channel=args.channel,
                messages=messages,
                window=args.window,
                server_pid=server_pid,
                watch_cpus=watch,
                timeout_s=args.timeout,
            )
            busy = ", ".join(f"{share:.0%}" for share in result.cpu_busy)
            log(
                f"{phase}: "
                f"{result.deliveries_per_s:,.0f} deliveries/s, loss {result.loss}, "
                f"server process {result.server_cpu:.0%}, load process {result.load_cpu:.0%}, "
                f"CPUs {watch} busy {busy}"
            )
        latency = await run_latency(
            publisher,
            subscribers,
            tally,
            channel=args.channel,
            rate=args.rate,
            seconds=args.latency_seconds,
            watch_cpus=watch,
            timeout_s=args.timeout,
        )
        log(
            f"latency: p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms, "
            f"loss {latency['loss']}, CPUs {watch} busy {latency['cpu_busy']}"
        )
    finally:
        for client in [*subscribers, publisher]:
            if client.transport is not None:
                client.transport.close()
    throughput = dataclasses.asdict(result)
    throughput["deliveries_per_s"] = result.deliveries_per_s
    return {"subscribers": len(subscribers), "throughput": throughput, "latency": latency}


def log(text: str) -> None:
    print(f"[load] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws:// URL including path and query")
    parser.add_argument("--channel", default="bench")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--window", type=int, default=32, help="unacked publishes in flight")
    parser.add_argument("--rate", type=float, default=20.0, help="latency phase, messages/s")
    parser.add_argument("--latency-seconds", type=float, default=4.0)
    parser.add_argument("--server-pid", type=int, help="to report the server's CPU use")
    parser.add_argument("--watch-cpus", default="", help="CPUs to report busy time for: 0,1")
    parser.add_argument("--timeout", type=float, default=60.0, help="per phase, seconds")
    return parser.parse_args(argv)


if __name__ == "__main__":
    outcome = uvloop.run(main(parse_args()))
    print(json.dumps(outcome), flush=True)
