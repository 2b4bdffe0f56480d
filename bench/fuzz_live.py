"""Live fuzz (issue 11): mixed valid and mutated ``/v1`` frames against a running server.

    .venv/bin/python bench/fuzz_live.py                      # 1,000,000 frames, 16 connections
    .venv/bin/python bench/fuzz_live.py --frames 200000

One ``hubbub serve`` (memory broker, the demo app, a generated config) on a free port. First a
well-behaved client alone (one publisher and one subscriber on ``probe``, ``--probe-rate``
publishes/s) for ``--baseline-s`` seconds: the baseline publish -> receive latency. Then
``--connections`` fuzzing connections send ``--frames`` frames in total, paced at ``--rate``
frames/s, while the probe keeps measuring. Each fuzzing connection reads whatever the server
answers; when the server closes it (4011 rate limit, 1009 oversize, 1007 bad encoding...), the
close code is counted and the connection is opened again.

The frames: about half valid (subscribe, unsubscribe, publish with all kinds of JSON data,
send, ping, presence options, history ``since``), the rest mutated from valid ones (bytes
flipped, inserted, deleted, truncated; fields given the wrong type, huge numbers, unknown
types and fields, control characters and lone surrogates in strings, deep nesting, binary
frames, invalid UTF-8, frames over the size limit).

Reported: crashes (the process alive at the end), "Traceback" count in the server log, RSS
before (after the baseline) and after (once the fuzzers left), close codes, and the probe's
p50/p99 before and during. Goal: 0 crashes / 0 tracebacks / RSS growth < 5 % / p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from hostile import DEMO_APP, Node, open_v1, percentile, subscribe, table

MAX_MESSAGE_BYTES = 65536


def config(rate_per_second: int) -> str:
    return f"""
[server]
connect_attempts_per_ip = 0

[limits]
rate_per_second = {rate_per_second}
rate_burst = {rate_per_second * 2}
max_message_bytes = {MAX_MESSAGE_BYTES}
{DEMO_APP}"""


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**31, 2**53 + 1, 10**30, -(10**20), rng.randrange(1000)])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e-300, 3.14])
    if kind in (4, 5):
        return random_string(rng)
    if kind in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_string(rng): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_string(rng: random.Random) -> str:
    choice = rng.randrange(8)
    if choice == 0:
        return ""
    if choice == 1:
        return "x" * rng.choice([1, 64, 65, 128, 129, 256, 1000])
    if choice == 2:
        return "".join(chr(rng.randrange(0, 32)) for _ in range(rng.randrange(1, 8)))
    if choice == 3:
        return rng.choice(["é", "😀", "\u202e", "\ufeff", "\\", "/", "*", "**", "a/**/b", "$sys"])
    if choice == 4:
        return "room/" + str(rng.randrange(20))
    return "".join(rng.choice("abcdefghij/*-_.:") for _ in range(rng.randrange(1, 12)))


def channel(rng: random.Random) -> Any:
    if rng.random() < 0.85:
        return f"fuzz/{rng.randrange(32)}"
    return random_json(rng)


def valid_frame(rng: random.Random) -> dict[str, Any]:
    kind = rng.randrange(7)
    rid = f"r{rng.randrange(10**6)}"
    if kind == 0:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel(rng), "requestId": rid}
        if rng.random() < 0.3:
            frame["since"] = {"offset": rng.randrange(100), "epoch": "e"}
        return frame
    if kind == 1:
        return {"type": "unsubscribe", "channel": channel(rng), "requestId": rid}
    if kind in (2, 3):
        frame = {"type": "publish", "channel": channel(rng), "data": random_json(rng)}
        if rng.random() < 0.5:
            frame["requestId"] = rid
        if rng.random() < 0.2:
            frame["messageId"] = random_string(rng)
        return frame
    if kind == 4:
        return {
            "type": "send",
            "to": random_string(rng),
            "data": random_json(rng),
            "requestId": rid,
        }
    if kind == 5:
        return {"type": "ping"}
    return {"type": random_string(rng), "requestId": rid}


def mutate(rng: random.Random, frame: dict[str, Any]) -> str | bytes:
    text = json.dumps(frame, ensure_ascii=rng.random() < 0.5)
    how = rng.randrange(14)
    if how == 0:  # flip bytes
        raw = bytearray(text.encode())
        for _ in range(rng.randrange(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw) if rng.random() < 0.5 else raw.decode(errors="replace")
    if how == 1:  # truncate
        return text[: rng.randrange(len(text))]
    if how == 2:  # insert junk
        at = rng.randrange(len(text))
        return (
            text[:at] + rng.choice(["{", "]", '"', "\\", ",,", "\x00", "NaN", "1e999"]) + text[at:]
        )
    if how == 3:  # a field of the wrong type
        key = rng.choice(["type", "channel", "requestId", "data", "to", "since", "messageId"])
        return json.dumps({**frame, key: random_json(rng)})
    if how == 4:  # unknown fields
        return json.dumps({**frame, random_string(rng): random_json(rng)})
    if how == 5:  # not an object
        return json.dumps(random_json(rng))
    if how == 6:  # nesting deeper than anyone needs (but far from a recursion limit)
        depth = rng.randrange(20, 200)
        return json.dumps({**frame, "data": 0})[:-2] + '": ' + "[" * depth + "]" * depth + "}"
    if how == 7:  # lone surrogates and escapes
        return text.replace('"', '"\\ud800', 1)
    if how == 8:  # binary frame
        return text.encode()
    if how == 9:  # invalid UTF-8 in a text frame's bytes
        return b"\xff\xfe" + text.encode()
    if how == 10 and rng.random() < 0.02:  # over the size limit (rare: it costs a reconnect)
        return json.dumps({**frame, "data": "x" * (MAX_MESSAGE_BYTES + rng.randrange(1, 4096))})
    if how == 11:  # duplicate keys
        return text[:-1] + ', "type": "publish"}'
    if how == 12:  # whitespace and numbers at the edges
        return " \t\n" + text.replace(":", ': 1e400, "z":', 1) + "\n"
    return text[::-1]


class Fuzzer:
    def __init__(self, url: str, index: int, frames: int, rate: float, seed: int) -> None:
        self.url, self.index, self.frames, self.rate = url, index, frames, rate
        self.rng = random.Random(seed * 1000 + index)
        self.closes: Counter[str] = Counter()
        self.sent = 0
        self.replies: Counter[str] = Counter()

    def next_frame(self) -> str | bytes:
        frame = valid_frame(self.rng)
        if self.rng.random() < 0.5:
            return json.dumps(frame)
        return mutate(self.rng, frame)

    async def run(self, session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        while self.sent < self.frames:
            try:
                ws, _ = await open_v1(session, self.url, max_msg_size=0)
            except Exception as exc:
                self.closes[f"connect failed: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.1)  # the server refused: try again shortly
                continue
            reader = asyncio.create_task(self._read(ws))
            try:
                while self.sent < self.frames and not ws.closed and not reader.done():
                    payload = self.next_frame()
                    if isinstance(payload, bytes):
                        await ws.send_bytes(payload)
                    else:
                        await ws.send_str(payload)
                    self.sent += 1
                    ahead = self.sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                pass  # closed under us: counted by the reader
            if not ws.closed:
                await ws.close()
            await reader
            self.closes[str(ws.close_code)] += 1

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    self.replies["not JSON"] += 1
                    continue
                kind = frame.get("type")
                self.replies[f"error {frame.get('code')}" if kind == "error" else str(kind)] += 1
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.replies["binary"] += 1


class Probe:
    """A well-behaved publisher and subscriber measuring publish -> receive."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate = url, rate
        self.latencies: list[tuple[float, float]] = []
        self.errors: Counter[str] = Counter()

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        publisher, _ = await open_v1(session, self.url)
        subscriber, _ = await open_v1(session, self.url)
        await subscribe(subscriber, "probe", "p")
        reader = asyncio.create_task(self._read(subscriber))
        next_at = time.monotonic()
        while not stop.is_set():
            frame = {"type": "publish", "channel": "probe", "data": {"t": time.perf_counter()}}
            await publisher.send_str(json.dumps(frame))
            next_at += 1 / self.rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(0.5)  # the last publications arrive
        await publisher.close()
        await subscriber.close()
        await reader

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame.get("type") == "message":
                now = time.perf_counter()
                self.latencies.append((time.monotonic(), (now - frame["data"]["t"]) * 1000))
            elif frame.get("type") == "error":
                self.errors[frame.get("code")] += 1
        if ws.close_code not in (1000, None):
            self.errors[f"closed {ws.close_code}"] += 1

    def between(self, start: float, end: float) -> list[float]:
        return [ms for at, ms in self.latencies if start <= at < end]


async def run_worker(
    url: str, indexes: list[int], per: int, args: argparse.Namespace
) -> dict[str, Any]:
    spec = {"url": url, "indexes": indexes, "per": per, "rate": args.rate / args.connections}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--worker",
        json.dumps({**spec, "seed": args.seed}),
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 24,
    )
    out, _ = await process.communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def worker(spec: dict[str, Any]) -> None:
    fuzzers = [
        Fuzzer(spec["url"], i, spec["per"], spec["rate"], spec["seed"]) for i in spec["indexes"]
    ]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(f.run(session) for f in fuzzers))
    result = {
        "sent": sum(f.sent for f in fuzzers),
        "closes": sum((f.closes for f in fuzzers), Counter()),
        "replies": sum((f.replies for f in fuzzers), Counter()),
    }
    print(json.dumps(result), flush=True)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="hubbub-fuzz-") as tmp:
        directory = Path(tmp)
        config_path = directory / "hubbub.toml"
        config_path.write_text(config(args.rate_limit))
        node = Node("fuzz", config_path, directory / "server.log")
        await node.start()
        stop = asyncio.Event()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            probe = Probe(node.url, args.probe_rate)
            probe_task = asyncio.create_task(probe.run(session, stop))
            baseline_start = time.monotonic()
            await asyncio.sleep(args.baseline_s)
            baseline_end = time.monotonic()
            rss_before = node.rss_kb()
            per = args.frames // args.connections
            print(
                f"fuzz: {per * args.connections} frames over {args.connections} connections "
                f"({args.processes} processes) at {args.rate:.0f}/s; server pid {node.pid}, "
                f"RSS {rss_before / 1024:.1f} MB",
                flush=True,
            )
            fuzz_start = time.monotonic()
            # The fuzzers run in processes of their own: their replies (tens of thousands a
            # second) must not delay the probe's event loop, only the server's.
            results = await asyncio.gather(
                *(
                    run_worker(
                        node.url, list(range(p, args.connections, args.processes)), per, args
                    )
                    for p in range(args.processes)
                )
            )
            fuzz_end = time.monotonic()
            stop.set()
            await probe_task
            await asyncio.sleep(2)  # the server finishes the fuzzers' closes
            alive = node.alive()
            rss_after = node.rss_kb() if alive else 0
            metrics = await node.metrics(session) if alive else {}
        log = node.log_text()
        await node.stop()

    sent = sum(r["sent"] for r in results)
    closes: Counter[str] = sum((Counter(r["closes"]) for r in results), Counter())
    replies: Counter[str] = sum((Counter(r["replies"]) for r in results), Counter())
    baseline = probe.between(baseline_start, baseline_end)
    during = probe.between(fuzz_start, fuzz_end)
    growth = (rss_after - rss_before) / rss_before * 100
    wall = fuzz_end - fuzz_start
    print()
    print(
        table(
            ["measure", "baseline (probe alone)", "during fuzz", "goal", "met"],
            [
                ["frames sent", "-", f"{sent} in {wall:.0f} s ({sent / wall:.0f}/s)", "", ""],
                ["server alive (crashes)", "-", "yes (0)" if alive else "NO (1)", "0", alive],
                ["Tracebacks in log", "-", log.count("Traceback"), "0", "Traceback" not in log],
                [
                    "RSS MB",
                    f"{rss_before / 1024:.1f}",
                    f"{rss_after / 1024:.1f} ({growth:+.1f} %)",
                    "< 5 %",
                    growth < 5,
                ],
                [
                    "probe p50 ms",
                    f"{percentile(baseline, 0.5):.2f}",
                    f"{percentile(during, 0.5):.2f}",
                    "",
                    "",
                ],
                [
                    "probe p99 ms",
                    f"{percentile(baseline, 0.99):.2f}",
                    f"{percentile(during, 0.99):.2f}",
                    "< 10",
                    percentile(during, 0.99) < 10,
                ],
                ["probe samples", len(baseline), len(during), "", ""],
                ["probe errors", "", dict(probe.errors) or 0, "0", not probe.errors],
                [
                    "frames the server read",
                    "",
                    int(metrics.get("hubbub_frames_received_total", 0)),
                    "",
                    "",
                ],
            ],
        )
    )
    print()
    print(table(["close code (fuzzers)", "count"], [[k, v] for k, v in closes.most_common()]))
    print()
    print(table(["reply to fuzzers", "count"], [[k, v] for k, v in replies.most_common(15)]))
    if "Traceback" in log:
        first = log.index("Traceback")
        print("\nfirst traceback in the server log:\n" + log[max(0, first - 300) : first + 2500])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        asyncio.run(worker(json.loads(sys.argv[2])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2, help="fuzzer processes")
    parser.add_argument("--rate", type=float, default=10000, help="frames/s, all connections")
    parser.add_argument("--rate-limit", type=int, default=5000, help="server's rate_per_second")
    parser.add_argument("--probe-rate", type=float, default=50)
    parser.add_argument("--baseline-s", type=float, default=10)
    parser.add_argument("--seed", type=int, default=11)
    asyncio.run(main(parser.parse_args()))
