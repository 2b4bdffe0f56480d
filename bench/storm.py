"""Reconnect storm (issue 11): a node with thousands of clients restarts; how fast are they all
welcomed back, and what do the clients on the other node feel?

    .venv/bin/python bench/storm.py                           # 5,000 clients, spread on
    .venv/bin/python bench/storm.py --clients 5000 --compare  # also the fixed 1-2 s window

Two ``hubbub serve`` nodes A and B share a private redis-server (free port). ``--clients``
storm clients (in ``--workers`` processes) connect to A and subscribe to one of 50 channels
(with presence); ``--stayers`` clients on B subscribe to 10 channels that a publisher on B
feeds at ``--rate`` msg/s. Then A gets SIGTERM: ``going_away`` with a jittered
``retryAfterMs`` to every client, the drain, close 1001; A is started again on its port.
Each storm client waits exactly the ``retryAfterMs`` it was given, then reconnects (connect
refused while A is down: the spec's backoff, 500 ms doubling to 4 s, +/-20 %), resubscribes.

Reported per run: the spread of retryAfterMs, SIGTERM -> A listening again, SIGTERM -> the
last client welcomed (goal <= 15 s) and resubscribed, failed connect attempts, the peak of
Redis clients, and the stayers' publish -> receive p50/p99 before and during the storm
(goal p99 < 50 ms). ``--compare`` runs it twice: ``shutdown_reconnects_per_s = 0`` (the
fixed 1-2 s window every earlier version used) and the configured spread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from hostile import DEMO_APP, Node, open_v1, percentile, subscribe, table
from redis.asyncio import Redis

from tests.support.redis import private_redis


def config(redis_url: str, reconnects_per_s: float) -> str:
    return f"""
[server]
connect_attempts_per_ip = 0
shutdown_reconnects_per_s = {reconnects_per_s}
backlog = 4096

[limits]
rate_per_second = 0
rate_burst = 0

[broker]
kind = "redis"
url = "{redis_url}"
key_prefix = "storm"
{DEMO_APP}
[[apps.keys]]
id = "pk_no_presence"
kind = "publishable"
channel_patterns = ["**"]
actions = ["publish", "subscribe"]
"""


# --- the storm clients (worker processes) ------------------------------------------------


class StormClient:
    def __init__(self, index: int, url: str, key: str) -> None:
        self.index, self.url, self.key = index, url, key
        self.retry_after_ms: int | None = None
        self.failed_connects = 0
        self.subscribe_errors = 0
        self.welcomed_at: float | None = None  # after the restart (wall clock)
        self.resubscribed_at: float | None = None
        self.connected = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession, go: asyncio.Event) -> None:
        ws = await self._connect(session)
        self.connected.set()
        await self._listen(ws)
        # Dropped: wait the hint, then reconnect with the normal backoff while refused.
        await asyncio.sleep((self.retry_after_ms or 1000) / 1000)
        attempt = 0
        while True:
            try:
                ws, _ = await open_v1(session, self.url, self.key)
                break
            except Exception:
                self.failed_connects += 1
                delay = min(4.0, 0.5 * 2**attempt) * random.uniform(0.8, 1.2)
                attempt += 1
                await asyncio.sleep(delay)
        self.welcomed_at = time.time()
        for attempt in range(20):
            try:
                await subscribe(ws, f"storm/{self.index % 50}", f"s2-{attempt}")
                break
            except RuntimeError:  # backend_error: "retry shortly"
                self.subscribe_errors += 1
                await asyncio.sleep(0.5 * random.uniform(0.8, 1.2))
        else:
            return
        self.resubscribed_at = time.time()
        await go.wait()
        await ws.close()

    async def _connect(self, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        for _ in range(20):
            try:
                ws, _ = await open_v1(session, self.url, self.key)
                await subscribe(ws, f"storm/{self.index % 50}", "s")
                return ws
            except Exception:
                await asyncio.sleep(0.5)  # the initial fill may meet a full backlog: retry
        raise RuntimeError("could not connect")

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                if frame.get("type") == "going_away":
                    self.retry_after_ms = int(frame["retryAfterMs"])


async def worker(spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    go = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        clients = [
            StormClient(i, spec["url"], spec["key"]) for i in range(spec["first"], spec["last"])
        ]
        tasks = []
        for start in range(0, len(clients), 50):  # connect in batches: no storm before the storm
            batch = clients[start : start + 50]
            tasks += [asyncio.create_task(c.run(session, go)) for c in batch]
            await asyncio.gather(*(c.connected.wait() for c in batch))
        print("ready", flush=True)
        await stdin.readline()  # "report" once every client is back (or the bench gave up)
        report = [
            [
                c.retry_after_ms,
                c.failed_connects,
                c.welcomed_at,
                c.resubscribed_at,
                c.subscribe_errors,
            ]
            for c in clients
        ]
        print(json.dumps(report), flush=True)
        go.set()
        await asyncio.wait(tasks, timeout=10)


# --- the bench ----------------------------------------------------------------------------


class Stayers:
    """Clients on B that stay; a publisher on B; publish -> receive latency over time."""

    def __init__(self, url: str, count: int, rate: float) -> None:
        self.url, self.count, self.rate = url, count, rate
        self.latencies: list[tuple[float, float]] = []
        self.lost = 0

    async def run(
        self, session: aiohttp.ClientSession, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        sockets = []
        for i in range(self.count):
            ws, _ = await open_v1(session, self.url)
            await subscribe(ws, f"stay/{i % 10}", "s")
            sockets.append(ws)
        readers = [asyncio.create_task(self._read(ws)) for ws in sockets]
        publisher, _ = await open_v1(session, self.url)
        ready.set()
        n, next_at = 0, time.monotonic()
        while not stop.is_set():
            n += 1
            frame = {"type": "publish", "channel": f"stay/{n % 10}", "data": {"t": time.time()}}
            await publisher.send_str(json.dumps(frame))
            next_at += 1 / self.rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        for ws in [*sockets, publisher]:
            await ws.close()
        await asyncio.gather(*readers)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame.get("type") == "message":
                now = time.time()
                self.latencies.append((now, (now - frame["data"]["t"]) * 1000))

    def between(self, start: float, end: float) -> list[float]:
        return [ms for at, ms in self.latencies if start <= at < end]


async def redis_clients(redis: Redis) -> int:
    return int((await redis.info("clients"))["connected_clients"])


async def one_run(args: argparse.Namespace, reconnects_per_s: float) -> list[Any]:
    async with private_redis() as redis_server:
        redis = Redis.from_url(redis_server.url)
        with tempfile.TemporaryDirectory(prefix="hubbub-storm-") as tmp:
            directory = Path(tmp)
            config_path = directory / "hubbub.toml"
            config_path.write_text(config(redis_server.url, reconnects_per_s))
            a = Node("A", config_path, directory / "a.log")
            b = Node("B", config_path, directory / "b.log")
            workers: list[asyncio.subprocess.Process] = []
            try:
                await asyncio.gather(a.start(), b.start())
                per = -(-args.clients // args.workers)
                for first in range(0, args.clients, per):
                    spec = {
                        "url": a.url,
                        "first": first,
                        "last": min(args.clients, first + per),
                        "key": "pk_live_demo" if args.presence else "pk_no_presence",
                    }
                    workers.append(
                        await asyncio.create_subprocess_exec(
                            sys.executable,
                            __file__,
                            "--worker",
                            json.dumps(spec),
                            stdin=asyncio.subprocess.PIPE,
                            stdout=asyncio.subprocess.PIPE,
                            limit=1 << 26,
                        )
                    )
                for process in workers:
                    assert process.stdout is not None
                    async with asyncio.timeout(300):
                        line = await process.stdout.readline()
                    assert line.strip() == b"ready", line
                print(f"  {args.clients} clients on A; ", end="", flush=True)
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0)
                ) as session:
                    stayers = Stayers(b.url, args.stayers, args.rate)
                    ready, stop = asyncio.Event(), asyncio.Event()
                    stay_task = asyncio.create_task(stayers.run(session, ready, stop))
                    await ready.wait()
                    before_start = time.time()
                    await asyncio.sleep(args.before_s)
                    redis_peak = await redis_clients(redis)
                    sigterm_at = time.time()
                    a.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
                    sampling = True

                    async def sample_redis() -> None:
                        nonlocal redis_peak
                        while sampling:
                            redis_peak = max(redis_peak, await redis_clients(redis))
                            await asyncio.sleep(0.2)

                    sampler = asyncio.create_task(sample_redis())
                    exit_code = await a.process.wait()  # type: ignore[union-attr]
                    exited_at = time.time()
                    await a.start()
                    up_at = time.time()
                    print(
                        f"A exited {exit_code} after {exited_at - sigterm_at:.1f} s; ",
                        end="",
                        flush=True,
                    )
                    # Wait until every client has resubscribed (A's connection count), bounded.
                    deadline = time.monotonic() + args.timeout_s
                    while time.monotonic() < deadline:
                        conns = (await a.metrics(session)).get("hubbub_connections", 0)
                        if conns >= args.clients:
                            break
                        await asyncio.sleep(0.2)
                    await asyncio.sleep(0.5)
                    storm_end = time.time()
                    sampling = False
                    await sampler
                    stop.set()
                    await stay_task
                reports: list[list[Any]] = []
                for process in workers:
                    assert process.stdin is not None and process.stdout is not None
                    process.stdin.write(b"report\n")
                    await process.stdin.drain()
                    reports += json.loads(await process.stdout.readline())
                for process in workers:
                    await process.wait()
                alive_b = b.alive()
                tracebacks = a.log_text().count("Traceback") + b.log_text().count("Traceback")
                if args.keep_logs:
                    keep = Path(args.keep_logs)
                    keep.mkdir(parents=True, exist_ok=True)
                    for node in (a, b):
                        (keep / f"{node.name}-{reconnects_per_s:g}.log").write_text(node.log_text())
            finally:
                # Whatever went wrong (a client's BrokenPipeError once), no node or load
                # generator outlives the run.
                for process in workers:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                await asyncio.gather(a.stop(), b.stop())
        await redis.aclose()

    retries = [r[0] for r in reports if r[0] is not None]
    welcomed = [r[2] for r in reports if r[2] is not None]
    resubscribed = [r[3] for r in reports if r[3] is not None]
    before = stayers.between(before_start, sigterm_at)
    during = stayers.between(sigterm_at, storm_end)
    return [
        ("off (fixed 1-2 s)" if reconnects_per_s == 0 else f"{reconnects_per_s:.0f}/s")
        + ("" if args.presence else ", no presence"),
        f"{min(retries, default=0)}..{max(retries, default=0)} ({len(retries)})",
        f"{up_at - sigterm_at:.1f}",
        f"{max(welcomed) - sigterm_at:.1f}" if welcomed else "-",
        f"{max(resubscribed) - sigterm_at:.1f} ({len(resubscribed)}/{args.clients})"
        if resubscribed
        else "-",
        f"{max(resubscribed) - up_at:.1f}" if resubscribed else "-",
        f"{sum(r[1] for r in reports)} / {sum(r[4] for r in reports)}",
        redis_peak,
        f"{percentile(before, 0.5):.1f} / {percentile(before, 0.99):.1f}",
        f"{percentile(during, 0.5):.1f} / {percentile(during, 0.99):.1f} ({len(during)})",
        f"B alive {alive_b}, tracebacks {tracebacks}",
    ]


async def main(args: argparse.Namespace) -> None:
    rows = []
    spreads = [0.0, args.reconnects_per_s] if args.compare else [args.reconnects_per_s]
    for spread in spreads:
        print(f"run: shutdown_reconnects_per_s = {spread}", flush=True)
        rows.append(await one_run(args, spread))
        print("done", flush=True)
    headers = [
        "spread",
        "retryAfterMs (clients)",
        "SIGTERM->A up s",
        "->last welcome s",
        "->last resubscribed s",
        "A up->last s",
        "refused connects / subscribe backend_errors",
        "Redis clients peak",
        "stayers p50/p99 before ms",
        "stayers p50/p99 storm ms",
        "health",
    ]
    print()
    print(table(headers, rows))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        asyncio.run(worker(json.loads(sys.argv[2])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--stayers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--reconnects-per-s", type=float, default=1000)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument(
        "--no-presence",
        dest="presence",
        action="store_false",
        help="storm clients' key lacks presence",
    )
    parser.add_argument("--before-s", type=float, default=5)
    parser.add_argument("--timeout-s", type=float, default=60)
    parser.add_argument("--keep-logs", default="", help="a directory for the nodes' logs")
    asyncio.run(main(parser.parse_args()))
