"""Conversation latency with the rule-based responder: time from ``send_user_text_input`` to
the first ``ai_transcribed_chunk`` of the answer, measured at the client.

    .venv/bin/python bench/conversation.py [--turns 1000] [--concurrency 200]

Runs a real ``hubbub serve`` (its own process, SQLite store, loopback) and three scenarios:

* 1,000 turns one after the other on one conversation;
* 200 conversations open at once, each speaking at a human pace (a turn every
  ``--interval`` seconds on average, Poisson arrivals) until 1,000 turns are done: the
  latency a live deployment with 200 concurrent conversations sees;
* the same 200 conversations all sending back to back (closed loop): the saturation
  throughput, where latency is queueing (200 turns in flight / turns per second).

Prints p50/p99/max per scenario. Goal (issue 4): p99 under 20 ms with 200 concurrent
conversations. The clients run in this process and share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubbub.client import ConversationClient  # noqa: E402
from tests.support.server import running_server  # noqa: E402

PROJECT = """
id: bench
apiKeys: [{key: bench-key}]
startingStageId: desk
stages:
  - id: desk
    variables: [{name: count, type: integer, default: 0}]
    actions:
      - name: status
        trigger: {keywords: [status]}
        effects:
          - type: modify_variables
            set: {count: "{{ stageVars.count + 1 }}"}
          - type: generate_response
            text: "Order {{ stageVars.count }} has shipped and should arrive on Thursday."
"""


def config(projects: Path, database: Path) -> str:
    return f"""
[conversations]
projects_dir = "{projects}"
database_url = "sqlite+aiosqlite:///{database}"
auth_attempts_per_ip = 0
"""


async def open_conversation(url: str) -> ConversationClient:
    client = await ConversationClient.connect(url)
    await client.auth("bench-key", receiveEvents=False)
    await client.start("bench-user")
    return client


async def one_turn(client: ConversationClient) -> float:
    started = time.perf_counter()
    await client.send(
        {
            "type": "send_user_text_input",
            "conversationId": client.conversation_id,
            "text": "what is my order status?",
        }
    )
    await client.wait_type("ai_transcribed_chunk", timeout_s=30)
    first_chunk = time.perf_counter()
    await client.wait_type("end_ai_generation_output", timeout_s=30)
    return (first_chunk - started) * 1000


async def sequential(url: str, turns: int) -> list[float]:
    client = await open_conversation(url)
    try:
        for _ in range(20):  # warm-up
            await one_turn(client)
        return [await one_turn(client) for _ in range(turns)]
    finally:
        await client.close()


async def concurrent(
    clients: list[ConversationClient], turns_each: int, interval_s: float
) -> list[float]:
    """Each client takes ``turns_each`` turns, pausing a random (exponential) time with mean
    ``interval_s`` before each one (0: back to back)."""
    rng = random.Random(4)

    async def run(client: ConversationClient) -> list[float]:
        latencies = []
        for _ in range(turns_each):
            if interval_s:
                await asyncio.sleep(rng.expovariate(1 / interval_s))
            latencies.append(await one_turn(client))
        return latencies

    results = await asyncio.gather(*(run(client) for client in clients))
    return [latency for per_client in results for latency in per_client]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def row(name: str, latencies: list[float], wall_s: float) -> str:
    return (
        f"| {name} | {len(latencies)} | {statistics.median(latencies):.2f} | "
        f"{percentile(latencies, 0.99):.2f} | {max(latencies):.2f} | "
        f"{len(latencies) / wall_s:.0f} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--interval", type=float, default=2.0, help="mean s between turns")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubbub-bench-") as tmp:
        projects = Path(tmp) / "projects"
        projects.mkdir()
        (projects / "bench.yaml").write_text(PROJECT, encoding="utf-8")
        async with running_server(config(projects, Path(tmp) / "store.db")) as server:
            url = server.ws_url + "/ws"
            print("| scenario | turns | p50 ms | p99 ms | max ms | turns/s |")
            print("|---|---|---|---|---|---|")
            started = time.perf_counter()
            latencies = await sequential(url, args.turns)
            print(row("1 conversation, sequential", latencies, time.perf_counter() - started))
            each = max(1, args.turns // args.concurrency)
            clients = await asyncio.gather(
                *(open_conversation(url) for _ in range(args.concurrency))
            )
            try:
                await concurrent(clients, 1, 0)  # warm-up
                for interval_s, name in [
                    (
                        args.interval,
                        f"{args.concurrency} conversations, a turn every ~{args.interval:g} s each",
                    ),
                    (0.0, f"{args.concurrency} conversations, back to back (saturation)"),
                ]:
                    started = time.perf_counter()
                    latencies = await concurrent(clients, each, interval_s)
                    print(row(name, latencies, time.perf_counter() - started))
            finally:
                await asyncio.gather(*(client.close() for client in clients))


if __name__ == "__main__":
    asyncio.run(main())
