"""Cluster fan-out: 3 Redis-backed nodes next to one memory-backed node, same load.

    .venv/bin/python bench/cluster.py [--subscribers 1000] [--rate 20] [--seconds 10]
                                      [--rounds 1] [--client-priority idle|normal]

Subscribers (raw WebSocket clients in one process, bench/subscribers.py) are spread
round-robin over the nodes; one publisher on the first node publishes at a fixed rate (latency
phase), then back-to-back (throughput phase). Reported per setup:

* deliveries/s in the throughput phase;
* CPU µs per delivery at the fixed rate, summed over the hubbub processes and the Redis server
  (/proc/<pid>/stat), and the subscribers' process's own CPU per delivery;
* p50/p99 publish -> deliver latency at the fixed rate, over all subscribers and over those on
  the nodes the publisher is not connected to (cross-node); "deliver" is the kernel's arrival
  stamp on the subscriber's socket (CLOCK_REALTIME, shared by the processes);
* Redis CPU as a share of the nodes' CPU.

Redis is a private redis-server on a free port so other work on the machine does not count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.support.redis import private_redis  # noqa: E402
from tests.support.server import ServerProcess, running_server  # noqa: E402

CHANNEL = "bench"
SINGLE = "single node (memory)"
CLUSTER = "3 nodes (redis)"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")

BENCH_TOML = """
[server]
connect_attempts_per_ip = 0

[limits]
rate_per_second = 0
rate_burst = 0

[[apps]]
id = "bench"

[[apps.keys]]
id = "pk_bench"
kind = "publishable"
actions = ["publish", "subscribe"]
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


class Subscribers:
    """bench/subscribers.py: every subscriber in one process, commanded over stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, urls: list[str], idle_priority: bool) -> Subscribers:
        options = ["--idle-priority"] if idle_priority else []
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "subscribers.py"),
            *options,
            CHANNEL,
            "pk_bench",
            *urls,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=HERE.parent,
            limit=1 << 26,  # the latency report is one long JSON line
        )
        subscribers = cls(process)
        assert await subscribers._line() == "ready"
        return subscribers

    async def _line(self) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(120):
            return (await self.process.stdout.readline()).decode().strip()

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        reply: dict[str, Any] = json.loads(await self._line())
        return reply

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


# --- orchestration -------------------------------------------------------------------------


@dataclass
class Result:
    setup: str
    deliveries_per_s: float
    cpu_us_per_delivery: float
    p50_ms: float
    p99_ms: float
    # Deliveries to subscribers on another node than the publisher's (None on one node).
    cross_node_p99_ms: float | None
    redis_share: float | None
    client_cpu_us_per_delivery: float


def percentile_ms(latencies_ns: list[int], fraction: float) -> float:
    if not latencies_ns:
        return float("nan")
    ordered = sorted(latencies_ns)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] / 1e6


@contextlib.asynccontextmanager
async def nodes_for(setup: str) -> AsyncIterator[tuple[list[ServerProcess], int | None]]:
    if setup == SINGLE:
        async with running_server(BENCH_TOML) as node:
            yield [node], None
        return
    async with private_redis() as redis, contextlib.AsyncExitStack() as stack:
        toml = f'[broker]\nkind = "redis"\nurl = "{redis.url}"\n' + BENCH_TOML
        nodes = [await stack.enter_async_context(running_server(toml)) for _ in range(3)]
        assert redis.process is not None
        yield nodes, redis.process.pid


async def run_setup(
    setup: str, subscribers: int, rate: float, seconds: float, idle_client: bool
) -> Result:
    async with nodes_for(setup) as (nodes, redis_pid):
        urls = [nodes[i % len(nodes)].ws_url for i in range(subscribers)]
        clients = await Subscribers.start(urls, idle_client)
        loop = asyncio.get_running_loop()
        pids = [node.process.pid for node in nodes]
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{nodes[0].http_url}/v1?key=pk_bench") as publisher,
        ):
            await publisher.receive()
            sequence = 0

            async def publish() -> None:
                nonlocal sequence
                sequence += 1
                data = {"t": time.time_ns(), "i": sequence}
                await publisher.send_str(
                    json.dumps({"type": "publish", "channel": CHANNEL, "data": data})
                )

            def cpu_now() -> tuple[float, float]:
                nodes_s = sum(cpu_seconds(pid) for pid in pids)
                return nodes_s, cpu_seconds(redis_pid) if redis_pid else 0.0

            # Latency and CPU at a fixed rate (each delivery is its own write, as in real use).
            before = cpu_now()
            client_before = (await clients.ask("count"))["cpu_s"]
            start = loop.time()
            for n in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
                await publish()
            await asyncio.sleep(0.5)  # let the last deliveries land before reading counts
            report = await clients.ask("report")
            after = cpu_now()
            by_node: dict[str, list[int]] = report["latencies"]
            node_cpu, redis_cpu = after[0] - before[0], after[1] - before[1]
            fixed_rate_deliveries = report["received"]
            client_cpu = report["cpu_s"] - client_before

            # Throughput: publish back-to-back, count deliveries.
            burst = 300
            began = time.perf_counter()
            for _ in range(burst):
                await publish()
            expected = burst * subscribers
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline:
                if (await clients.ask("count"))["received"] >= expected:
                    break
                await asyncio.sleep(0.02)  # polling a counter in another process
            elapsed = time.perf_counter() - began
            delivered = (await clients.ask("count"))["received"]
        await clients.stop()
        everywhere = [ns for latencies in by_node.values() for ns in latencies]
        remote = [ns for url, lat in by_node.items() if url != nodes[0].ws_url for ns in lat]
        return Result(
            setup=setup,
            deliveries_per_s=delivered / elapsed,
            cpu_us_per_delivery=(node_cpu + redis_cpu) * 1e6 / max(1, fixed_rate_deliveries),
            p50_ms=percentile_ms(everywhere, 0.5),
            p99_ms=percentile_ms(everywhere, 0.99),
            cross_node_p99_ms=percentile_ms(remote, 0.99) if len(nodes) > 1 else None,
            redis_share=(redis_cpu / node_cpu) if redis_pid and node_cpu else None,
            client_cpu_us_per_delivery=client_cpu * 1e6 / max(1, fixed_rate_deliveries),
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="publishes/s, latency phase")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1, help="each setup, alternating")
    parser.add_argument(
        "--client-priority",
        choices=("idle", "normal"),
        default="idle",
        help="idle: the subscribers' process only uses CPU the servers leave (see subscribers.py)",
    )
    args = parser.parse_args()
    idle_client = args.client_priority == "idle"
    results = []
    for _ in range(args.rounds):
        for setup in (SINGLE, CLUSTER):
            results.append(
                await run_setup(setup, args.subscribers, args.rate, args.seconds, idle_client)
            )
    print(
        f"\n{args.subscribers} subscribers; latency and CPU at {args.rate:g} msg/s for "
        f"{args.seconds:g} s; deliveries/s over a 300-message burst; subscriber process at "
        f"{args.client_priority} priority; load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| setup | deliveries/s | CPU µs/delivery (nodes+redis) | p50 ms | p99 ms "
        "| cross-node p99 ms | redis CPU / nodes CPU | client CPU µs/delivery |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        share = "-" if r.redis_share is None else f"{r.redis_share:.1%}"
        cross = "-" if r.cross_node_p99_ms is None else f"{r.cross_node_p99_ms:.2f}"
        print(
            f"| {r.setup} | {r.deliveries_per_s:,.0f} | {r.cpu_us_per_delivery:.1f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {cross} | {share} | "
            f"{r.client_cpu_us_per_delivery:.1f} |"
        )
    for single, cluster in zip(results[::2], results[1::2], strict=True):
        speed = cluster.deliveries_per_s / single.deliveries_per_s
        cost = cluster.cpu_us_per_delivery / single.cpu_us_per_delivery
        tail = (cluster.cross_node_p99_ms or float("nan")) / single.p99_ms
        print(
            f"cluster/single: deliveries/s x{speed:.2f}, CPU/delivery x{cost:.2f}, "
            f"cross-node p99 / single-node p99 x{tail:.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
