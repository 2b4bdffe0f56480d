"""What the conversation bus costs a conversation: turn latency and throughput with the bus off,
on with nobody watching, and on with a realtime watcher of every conversation, side by side.

    .venv/bin/python bench/conversation_bus.py [--turns 500] [--concurrency 50]

Each configuration runs its own ``hubbub serve`` (SQLite store, memory broker, loopback) and
the scenarios of ``bench/conversation.py``: one conversation taking turns one after the other,
then ``--concurrency`` conversations back to back (saturation: turns/s is the figure). Latency is
from ``send_user_text_input`` to the answer's first ``ai_transcribed_chunk``, at the client.
Each configuration runs ``--rounds`` times, interleaved in alternating order; "vs off" divides
by the mean saturated rate of the bus-off runs. The watcher (a raw WebSocket realtime client
subscribed to ``conversations/bench/*``) reads every publication in this process, as a
supervisor page would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.conversation import (  # noqa: E402
    PROJECT,
    concurrent,
    open_conversation,
    percentile,
    sequential,
)
from tests.support.server import DEMO_APP_TOML, running_server  # noqa: E402


def config(projects: Path, database: Path, bus: bool) -> str:
    events = 'events_app = "demo"\n' if bus else ""
    return (
        f"""
[conversations]
projects_dir = "{projects}"
database_url = "sqlite+aiosqlite:///{database}"
auth_attempts_per_ip = 0
{events}"""
        + DEMO_APP_TOML
    )


@contextlib.asynccontextmanager
async def watcher(http_url: str) -> AsyncIterator[list[int]]:
    """Counts the bus publications it receives (in a one-item list)."""
    received = [0]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{http_url}/v1?key=pk_live_demo")
        await ws.receive_json()  # welcome
        await ws.send_json(
            {"type": "subscribe", "channel": "conversations/bench/*", "requestId": "s"}
        )

        async def read() -> None:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT and '"message"' in message.data:
                    received[0] += message.data.count('"type":"message"')

        task = asyncio.create_task(read())
        try:
            yield received
        finally:
            task.cancel()
            await ws.close()


async def measure(url: str, turns: int, concurrency: int) -> tuple[list[float], list[float], float]:
    sequential_latencies = await sequential(url, turns)
    clients = await asyncio.gather(*(open_conversation(url) for _ in range(concurrency)))
    try:
        await concurrent(clients, 1, 0)  # warm-up
        started = time.perf_counter()
        saturated = await concurrent(clients, max(1, turns // concurrency), 0)
        rate = len(saturated) / (time.perf_counter() - started)
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    return sequential_latencies, saturated, rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="each configuration, interleaved")
    args = parser.parse_args()
    rows = []
    configurations = [
        ("bus off", False, False),
        ("bus on, nobody watching", True, False),
        ("bus on, one watcher of every conversation", True, True),
    ]
    # Interleaved, the order reversed every other round: the machine's load drifts.
    order = [
        c for r in range(args.rounds) for c in (configurations[::-1] if r % 2 else configurations)
    ]
    for name, bus, watched in order:
        with tempfile.TemporaryDirectory(prefix="hubbub-bench-") as tmp:
            projects = Path(tmp) / "projects"
            projects.mkdir()
            (projects / "bench.yaml").write_text(PROJECT, encoding="utf-8")
            toml = config(projects, Path(tmp) / "store.db", bus)
            async with running_server(toml) as server, contextlib.AsyncExitStack() as stack:
                seen = [0]
                if watched:
                    seen = await stack.enter_async_context(watcher(server.http_url))
                one, many, rate = await measure(server.ws_url + "/ws", args.turns, args.concurrency)
                rows.append((name, one, many, rate, seen[0]))
    base_rate = statistics.mean(r[3] for r in rows if r[0] == "bus off")
    print(
        "| configuration | 1 conv p50 ms | 1 conv p99 ms | "
        f"{args.concurrency} conv p50 ms | turns/s (saturated) | vs off | watcher got |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, one, many, rate, seen in rows:
        print(
            f"| {name} | {statistics.median(one):.2f} | {percentile(one, 0.99):.2f} | "
            f"{statistics.median(many):.1f} | {rate:.0f} | {rate / base_rate:.2f} | {seen} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
