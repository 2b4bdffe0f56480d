"""Cluster fan-out: 3 Redis-backed nodes next to one memory-backed node, same load.

    .venv/bin/python bench/cluster.py [--subscribers 1000] [--rate 20] [--seconds 10]

Subscribers (raw WebSocket clients in two worker processes) are spread round-robin over the
nodes; one publisher on the first node publishes at a fixed rate (latency phase), then as fast
as acks allow (throughput phase). Reported per setup:

* deliveries/s in the throughput phase;
* CPU µs per delivery, summed over the hubbub processes and the Redis server (/proc/<pid>/stat);
* p50/p99 publish->deliver latency at the fixed rate (CLOCK_MONOTONIC is shared by processes);
* Redis CPU as a share of the nodes' CPU.

Redis is a private redis-server on a free port so other work on the machine does not count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.redis import private_redis
from tests.support.server import ServerProcess, running_server

CHANNEL = "bench"
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


# --- subscriber worker process -------------------------------------------------------------


async def _subscribers(urls: list[str], pipe: Pipe) -> None:
    latencies_ns: list[int] = []
    received = 0
    # No connector limit: every WebSocket holds a connection for its whole life.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = []
        for url in urls:
            ws = await session.ws_connect(f"{url}/v1?key=pk_bench", max_msg_size=0)
            await ws.receive()  # welcome
            await ws.send_str(
                json.dumps({"type": "subscribe", "channel": CHANNEL, "requestId": "s"})
            )
            await ws.receive()  # ack
            sockets.append(ws)
        pipe.send("ready")

        async def read(ws: aiohttp.ClientWebSocketResponse, timed: bool) -> None:
            # Only every 10th socket decodes its frames: the load generator shares the two
            # cores with the servers, and parsing every delivery would measure the client.
            nonlocal received
            async for msg in ws:
                received += 1
                if timed:
                    latencies_ns.append(time.monotonic_ns() - json.loads(msg.data)["data"]["t"])

        readers = [asyncio.create_task(read(ws, n % 10 == 0)) for n, ws in enumerate(sockets)]
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command == "report":
                pipe.send((received, latencies_ns))
                latencies_ns = []
                received = 0
            elif command == "count":
                pipe.send(received)
            else:
                break
        for task in readers:
            task.cancel()
        for ws in sockets:
            await ws.close()


def _worker(urls: list[str], pipe: Pipe) -> None:
    asyncio.run(_subscribers(urls, pipe))


# --- orchestration -------------------------------------------------------------------------


@dataclass
class Result:
    setup: str
    deliveries_per_s: float
    cpu_us_per_delivery: float
    p50_ms: float
    p99_ms: float
    redis_share: float | None


@contextlib.asynccontextmanager
async def nodes_for(setup: str) -> AsyncIterator[tuple[list[ServerProcess], int | None]]:
    if setup == "single node (memory)":
        async with running_server(BENCH_TOML) as node:
            yield [node], None
        return
    async with private_redis() as redis, contextlib.AsyncExitStack() as stack:
        toml = f'[broker]\nkind = "redis"\nurl = "{redis.url}"\n' + BENCH_TOML
        nodes = [await stack.enter_async_context(running_server(toml)) for _ in range(3)]
        assert redis.process is not None
        yield nodes, redis.process.pid


async def run_setup(setup: str, subscribers: int, rate: float, seconds: float) -> Result:
    async with nodes_for(setup) as (nodes, redis_pid):
        urls = [nodes[i % len(nodes)].http_url for i in range(subscribers)]
        context = multiprocessing.get_context("spawn")
        workers = []
        for part in (urls[0::2], urls[1::2]):
            ours, theirs = context.Pipe()
            process = context.Process(target=_worker, args=(part, theirs), daemon=True)
            process.start()
            workers.append((process, ours))
        loop = asyncio.get_running_loop()
        for _, pipe in workers:
            assert await loop.run_in_executor(None, pipe.recv) == "ready"

        def collect(command: str) -> list[object]:
            replies = []
            for _, pipe in workers:
                pipe.send(command)
            for _, pipe in workers:
                replies.append(pipe.recv())
            return replies

        pids = [node.process.pid for node in nodes]
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{nodes[0].http_url}/v1?key=pk_bench") as publisher,
        ):
            await publisher.receive()
            sequence = 0

            async def publish(wait_ack: bool) -> None:
                nonlocal sequence
                sequence += 1
                data = {"t": time.monotonic_ns(), "i": sequence}
                frame = {"type": "publish", "channel": CHANNEL, "data": data}
                if wait_ack:
                    frame["requestId"] = str(sequence)
                await publisher.send_str(json.dumps(frame))
                if wait_ack:
                    await publisher.receive()

            # Latency at a fixed rate.
            start = loop.time()
            for n in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
                await publish(wait_ack=False)
            await asyncio.sleep(0.5)  # let the last deliveries land before reading counts
            reports = await loop.run_in_executor(None, collect, "report")
            latencies = sorted(ns for _, lat in reports for ns in lat)  # type: ignore[attr-defined]

            # Throughput: publish back-to-back, count deliveries and CPU.
            burst = 300
            cpu_before = [cpu_seconds(pid) for pid in pids]
            redis_before = cpu_seconds(redis_pid) if redis_pid else 0.0
            began = time.perf_counter()
            for _ in range(burst):
                await publish(wait_ack=False)
            expected = burst * subscribers
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline:
                counts = await loop.run_in_executor(None, collect, "count")
                if sum(counts) >= expected:  # type: ignore[arg-type]
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - began
            delivered = sum(await loop.run_in_executor(None, collect, "count"))  # type: ignore[arg-type]
            node_cpu = sum(cpu_seconds(pid) for pid in pids) - sum(cpu_before)
            redis_cpu = (cpu_seconds(redis_pid) - redis_before) if redis_pid else 0.0
        for process, pipe in workers:
            pipe.send("stop")
            process.join(10)
        return Result(
            setup=setup,
            deliveries_per_s=delivered / elapsed,
            cpu_us_per_delivery=(node_cpu + redis_cpu) * 1e6 / max(1, delivered),
            p50_ms=statistics.median(latencies) / 1e6 if latencies else float("nan"),
            p99_ms=latencies[int(len(latencies) * 0.99)] / 1e6 if latencies else float("nan"),
            redis_share=(redis_cpu / node_cpu) if redis_pid and node_cpu else None,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="publishes/s, latency phase")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    results = [
        await run_setup(setup, args.subscribers, args.rate, args.seconds)
        for setup in ("single node (memory)", "3 nodes (redis)")
    ]
    print(
        f"\n{args.subscribers} subscribers, latency at {args.rate:g} msg/s for {args.seconds:g} s, "
        "throughput over a 300-message burst\n"
    )
    print(
        "| setup | deliveries/s | CPU µs/delivery (nodes+redis) | p50 ms | p99 ms "
        "| redis CPU / nodes CPU |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        share = "-" if r.redis_share is None else f"{r.redis_share:.1%}"
        print(
            f"| {r.setup} | {r.deliveries_per_s:,.0f} | {r.cpu_us_per_delivery:.1f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {share} |"
        )
    single, cluster = results
    speed = cluster.deliveries_per_s / single.deliveries_per_s
    cost = cluster.cpu_us_per_delivery / single.cpu_us_per_delivery
    print(f"\ncluster/single: deliveries/s x{speed:.2f}, CPU/delivery x{cost:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
