"""Rolling restart under traffic: is anything lost or duplicated? (issue 12)

    .venv/bin/python bench/rolling_restart.py                 # 500 subs, 10 pubs, 200 msg/s, 60 s

Two ``hubbub serve`` nodes share a private redis-server (on a free port); every channel keeps
history. ``--subscribers`` clients of :class:`hubbub.client.RealtimeClient` (spread over the two
nodes, each given both URLs) subscribe to one of ``--publishers`` channels; each publisher
publishes to its own channel at ``rate / publishers`` msg/s through a RealtimeClient too
(retried with a messageId). While traffic flows, each node is restarted once, gracefully:
SIGTERM (``going_away``, drain, close 1001), wait for it to exit, start it again on its port.

Reported: publications acknowledged; deliveries expected (every acknowledged publication on a
channel, for each of its subscribers) and made; **lost** (expected, never delivered) and
**duplicated** (delivered more than once) — the goal is 0 and 0; resubscribes and how many
said ``recovered: false``; the reconnect spread (SIGTERM to each moved client's recovered
resubscribe); and publish -> delivery latency p50/p99 before, during and after the restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hubbub.client import Message, RealtimeClient, Subscribed  # noqa: E402
from tests.support.redis import free_port, private_redis  # noqa: E402

KEY = "pk_bench"


def config(redis_url: str, port: int) -> str:
    return f"""
[server]
host = "127.0.0.1"
port = {port}
connect_attempts_per_ip = 0
shutdown_drain_s = 1.0
slow_consumer_bytes = 67108864

[limits]
rate_per_second = 0
rate_burst = 0

[broker]
kind = "redis"
url = "{redis_url}"
key_prefix = "rolling"

[[apps]]
id = "bench"

[[apps.keys]]
id = "{KEY}"
kind = "publishable"
# No presence: 500 joins would cost ~125k presence frames that measure nothing here.
actions = ["publish", "subscribe"]

[[apps.channels]]
pattern = "**"
history_size = 5000
history_ttl_s = 600
"""


class ServerNode:
    """One ``hubbub serve`` on a fixed port, restartable."""

    def __init__(self, name: str, config_path: Path, port: int) -> None:
        self.name = name
        self.config_path = config_path
        self.port = port
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hubbub",
            "serve",
            "--config",
            str(self.config_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        async with asyncio.timeout(30):
            while b"Hubbub listening on" not in (line := await self.process.stdout.readline()):
                if not line:
                    raise RuntimeError(f"{self.name} exited before listening")
        self._drain = asyncio.create_task(self._read_rest(self.process.stdout))

    async def _read_rest(self, stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._drain is not None:
            self._drain.cancel()


@dataclass
class Tally:
    started: float
    published: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    publish_failures: Counter[str] = field(default_factory=Counter)
    # (subscriber, channel, seq) -> times delivered
    deliveries: Counter[tuple[int, str, int]] = field(default_factory=Counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (received at, ms)
    resubscribes: list[tuple[float, int, bool | None]] = field(default_factory=list)
    restarts: list[tuple[str, float, float]] = field(default_factory=list)  # name, sigterm, up


async def publisher(
    client: RealtimeClient, channel: str, rate: float, until: float, tally: Tally
) -> None:
    seq = 0
    interval = 1 / rate
    next_at = time.monotonic()
    pending: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        try:
            await client.publish(channel, {"seq": n, "t": time.time()})
        except Exception as exc:
            tally.publish_failures[getattr(exc, "code", type(exc).__name__)] += 1
            return
        tally.published[channel].add(n)

    while time.monotonic() < until:
        seq += 1
        task = asyncio.create_task(one(seq))  # paced: a slow ack must not slow the rate
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*pending)


async def subscriber(index: int, client: RealtimeClient, channel: str, tally: Tally) -> None:
    async for event in client.events():
        if isinstance(event, Message):
            now = time.time()
            tally.deliveries[(index, channel, event.data["seq"])] += 1
            tally.latencies.append((now, (now - event.data["t"]) * 1000))
        elif isinstance(event, Subscribed) and event.recovered is not None:
            tally.resubscribes.append((time.time(), index, event.recovered))


async def worker(spec: dict[str, Any]) -> int:
    """A process holding some of the subscribers (one Python process cannot receive 10,000
    messages/s without becoming the bottleneck). Answers "count" and "report" on stdin."""
    urls, channels = spec["urls"], spec["channels"]
    tally = Tally(time.time())
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    connector = aiohttp.TCPConnector(limit=0)  # one session, many sockets
    made: list[RealtimeClient] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        for index in range(spec["first"], spec["first"] + spec["count"]):
            start = index % 2  # half on each node; both URLs to fail over
            client = RealtimeClient(
                urls[start:] + urls[:start], api_key=KEY, session=session, backoff_initial_s=0.2
            )
            await client.connect()
            channel = channels[index % len(channels)]
            await client.subscribe(channel)
            made.append(client)
            tasks.append(asyncio.create_task(subscriber(index, client, channel, tally)))
        print("ready", flush=True)
        while line := (await stdin.readline()).strip():
            if line == b"count":
                print(sum(tally.deliveries.values()), flush=True)
            elif line == b"report":
                break
        for client in made:
            await client.close()
    report = {
        "deliveries": [[i, c, seq, n] for (i, c, seq), n in tally.deliveries.items()],
        "latencies": [[round(at, 4), round(ms, 2)] for at, ms in tally.latencies],
        "resubscribes": tally.resubscribes,
    }
    print(json.dumps(report), flush=True)
    return 0


class Workers:
    """The subscriber processes, commanded over their stdin."""

    def __init__(self) -> None:
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, args: argparse.Namespace, urls: list[str], channels: list[str]) -> None:
        per = -(-args.subscribers // args.workers)
        for first in range(0, args.subscribers, per):
            spec = {
                "urls": urls,
                "channels": channels,
                "first": first,
                "count": min(per, args.subscribers - first),
            }
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                json.dumps(spec),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 30,
            )
            self.processes.append(process)
        for process in self.processes:
            assert process.stdout is not None
            async with asyncio.timeout(120):
                assert (await process.stdout.readline()).strip() == b"ready"

    async def ask(self, command: str) -> list[bytes]:
        answers = []
        for process in self.processes:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(command.encode() + b"\n")
            await process.stdin.drain()
            answers.append(await process.stdout.readline())
        return answers

    async def collect(self, tally: Tally) -> None:
        for raw in await self.ask("report"):
            report = json.loads(raw)
            for index, channel, seq, count in report["deliveries"]:
                tally.deliveries[(index, channel, seq)] += count
            tally.latencies.extend((at, ms) for at, ms in report["latencies"])
            tally.resubscribes.extend((at, i, ok) for at, i, ok in report["resubscribes"])
        for process in self.processes:
            await process.wait()

    def kill(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def report(tally: Tally, args: argparse.Namespace, channel_of: list[str]) -> dict[str, Any]:
    expected = {
        (index, channel, seq)
        for index, channel in enumerate(channel_of)
        for seq in tally.published[channel]
    }
    delivered = set(tally.deliveries)
    lost = len(expected - delivered)
    duplicated = sum(count - 1 for count in tally.deliveries.values() if count > 1)
    first_term = min(r[1] for r in tally.restarts)
    last_up = max(r[2] for r in tally.restarts)
    windows = {
        "before": [ms for at, ms in tally.latencies if at < first_term],
        "during": [ms for at, ms in tally.latencies if first_term <= at < last_up + 2],
        "after": [ms for at, ms in tally.latencies if at >= last_up + 2],
    }
    spreads = []
    terms = [term for _, term, _ in tally.restarts] + [float("inf")]
    for number, (name, term, _up) in enumerate(tally.restarts):
        window_end = min(terms[number + 1], term + 30)
        moved = sorted(at - term for at, _, _ in tally.resubscribes if term <= at < window_end)
        spreads.append(
            {
                "node": name,
                "clients": len(moved),
                "first_s": moved[0] if moved else None,
                "median_s": statistics.median(moved) if moved else None,
                "last_s": moved[-1] if moved else None,
            }
        )
    return {
        "subscribers": args.subscribers,
        "publishers": args.publishers,
        "rate": args.rate,
        "seconds": args.seconds,
        "published": sum(len(s) for s in tally.published.values()),
        "publish_failures": dict(tally.publish_failures),
        "deliveries_expected": len(expected),
        "deliveries_made": sum(tally.deliveries.values()),
        "lost": lost,
        "duplicated": duplicated,
        "unexpected": len(delivered - expected),
        "resubscribes": len(tally.resubscribes),
        "not_recovered": sum(1 for _, _, ok in tally.resubscribes if ok is False),
        "reconnect_spread": spreads,
        "latency_ms": {
            name: {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)}
            for name, v in windows.items()
        },
        "restarts": [{"node": n, "down_s": round(up - term, 2)} for n, term, up in tally.restarts],
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['subscribers']} subscribers, {result['publishers']} publishers, "
        f"{result['rate']:g} msg/s for {result['seconds']:g} s, 2 nodes + Redis, "
        "each node restarted once (SIGTERM, drain, start)",
        "",
        "| published | deliveries expected | delivered | lost | duplicated | resubscribes "
        "| recovered: false |",
        "|---|---|---|---|---|---|---|",
        f"| {result['published']:,} | {result['deliveries_expected']:,} | "
        f"{result['deliveries_made']:,} | **{result['lost']}** | **{result['duplicated']}** | "
        f"{result['resubscribes']} | {result['not_recovered']} |",
        "",
        "| restart | node down (s) | clients moved | first (s) | median (s) | last (s) |",
        "|---|---|---|---|---|---|",
    ]
    for restart, spread in zip(result["restarts"], result["reconnect_spread"], strict=True):

        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        lines.append(
            f"| {spread['node']} | {restart['down_s']:.2f} | {spread['clients']} | "
            f"{fmt(spread['first_s'])} | {fmt(spread['median_s'])} | {fmt(spread['last_s'])} |"
        )
    lines += ["", "| latency | p50 ms | p99 ms | deliveries |", "|---|---|---|---|"]
    for name, figures in result["latency_ms"].items():
        lines.append(f"| {name} | {figures['p50']:.1f} | {figures['p99']:.1f} | {figures['n']:,} |")
    if result["publish_failures"] or result["unexpected"]:
        lines.append(
            f"\npublishes that failed after every retry (never acknowledged, so not expected): "
            f"{result['publish_failures']}; deliveries of those: {result['unexpected']}"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    connector = aiohttp.TCPConnector(limit=0)  # one session, 510 sockets
    async with private_redis() as redis, aiohttp.ClientSession(connector=connector) as session:
        with tempfile.TemporaryDirectory(prefix="hubbub-rolling-") as tmp:
            nodes = []
            for name in ("node-1", "node-2"):
                port = free_port()
                path = Path(tmp) / f"{name}.toml"
                path.write_text(config(redis.url, port), encoding="utf-8")
                nodes.append(ServerNode(name, path, port))
            await asyncio.gather(*(node.start() for node in nodes))
            urls = [node.url for node in nodes]
            channels = [f"feed/{n}" for n in range(args.publishers)]
            channel_of = [channels[i % len(channels)] for i in range(args.subscribers)]
            tally = Tally(time.time())
            made: list[RealtimeClient] = []
            workers = Workers()
            try:
                await workers.start(args, urls, channels)
                log(f"{args.subscribers} subscribers ready in {args.workers} processes")
                tally.started = time.time()
                pubs = []
                publish_until = time.monotonic() + args.seconds
                for n, channel in enumerate(channels):
                    start = n % 2
                    client = RealtimeClient(
                        urls[start:] + urls[:start], api_key=KEY, session=session,
                        backoff_initial_s=0.2,
                    )  # fmt: skip
                    await client.connect()
                    made.append(client)
                    pubs.append(
                        asyncio.create_task(
                            publisher(
                                client, channel, args.rate / args.publishers, publish_until, tally
                            )
                        )
                    )
                restarter = asyncio.create_task(restarts(nodes, args, tally))
                await asyncio.gather(*pubs)
                await restarter
                log("publishing done; waiting for the last deliveries")
                await settle(workers, tally, channel_of, args.settle_seconds)
                await workers.collect(tally)
            finally:
                workers.kill()
                for client in made:
                    await client.close()
                for node in nodes:
                    await node.stop()
    result = report(tally, args, channel_of)
    print(render(result))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


async def restarts(nodes: list[ServerNode], args: argparse.Namespace, tally: Tally) -> None:
    for node, at in zip(nodes, (args.seconds * 0.25, args.seconds * 0.6), strict=True):
        await asyncio.sleep(max(0.0, tally.started + at - time.time()))
        log(f"restarting {node.name}")
        term = time.time()
        await node.stop(signal.SIGTERM)
        await node.start()
        tally.restarts.append((node.name, term, time.time()))
        log(f"{node.name} is back after {time.time() - term:.1f} s")


async def settle(workers: Workers, tally: Tally, channel_of: list[str], seconds: float) -> None:
    """Wait (bounded) until every expected delivery has arrived."""
    deadline = time.monotonic() + seconds
    expected = sum(len(tally.published[channel]) for channel in channel_of)
    while time.monotonic() < deadline:
        if sum(int(n) for n in await workers.ask("count")) >= expected:
            return
        await asyncio.sleep(0.5)  # deliveries are counted in other processes: poll, bounded


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--publishers", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s, all publishers")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle-seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=3, help="subscriber processes")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: a subscriber process
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    arguments = parse_args()
    if arguments.worker:
        sys.exit(asyncio.run(worker(json.loads(arguments.worker))))
    sys.exit(asyncio.run(main(arguments)))
