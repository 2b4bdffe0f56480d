"""Soak (issue 11): does a node hold steady under mixed traffic for a long time?

    .venv/bin/python bench/soak.py                                # 30 min, 5 min warm-up
    .venv/bin/python bench/soak.py --minutes 10 --warmup 2 --subscribers 500

One ``hubbub serve`` on the Redis broker (a private redis-server on a free port, key prefix
``soak``) with a conversation project, and at the same time:

* connect churn: ``--churn`` connects per second (default 50), each subscribing to one of 20
  ``churn/*`` channels with presence, held 0.2-2 s, then half closed properly and half
  dropped without a close frame (the TCP connection aborted);
* ``--subscribers`` steady subscribers (default 1,000) on ``--channels`` ``steady/*`` channels
  (with presence), fed by one publisher at ``--rate`` publishes/s in total (default 20);
* a text conversation turn per second over ``/ws`` (a new conversation every 30 turns, the
  old one ended);
* REST every second: a publish and a presence listing.

Every ``--sample-s`` (default 60) it samples the server's RSS and open fds (/proc), its asyncio
tasks and connections (``/metrics``), presence entries (Redis: the node's presence index) and
the number of Redis keys. At the end churn stops, the server gets ``presence settle`` seconds,
and the presence entries must equal the steady subscribers (no ghosts).

Goal after the warm-up: RSS drift <= 2 %, fds and tasks flat, no ghost presence.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from hostile import DEMO_APP, Node, abort, open_v1, percentile, subscribe, table
from redis.asyncio import Redis

from hubbub.client import ConversationClient
from tests.support.redis import private_redis

PREFIX = "soak"
SECRET = "Bearer sk_id_demo:sk_secret_demo"

PROJECT = """
id: soak
apiKeys: [{key: soak-key}]
startingStageId: desk
stages:
  - id: desk
    actions:
      - name: status
        trigger: {keywords: [status]}
        effects:
          - type: generate_response
            text: "Your order has shipped and should arrive on Thursday."
"""


def config(redis_url: str, projects: Path, database: Path) -> str:
    return f"""
[server]
connect_attempts_per_ip = 0

[broker]
kind = "redis"
url = "{redis_url}"
key_prefix = "{PREFIX}"

[conversations]
projects_dir = "{projects}"
database_url = "sqlite+aiosqlite:///{database}"
auth_attempts_per_ip = 0
{DEMO_APP}"""


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # publish -> receive, ms (this minute)
    turn_ms: list[float] = field(default_factory=list)


async def churn(session: aiohttp.ClientSession, url: str, rate: float, tally: Tally) -> None:
    async def one(n: int) -> None:
        try:
            ws, _ = await open_v1(session, url)
        except Exception as exc:
            tally.counts[f"churn connect failed: {type(exc).__name__}"] += 1
            return
        try:
            await subscribe(ws, f"churn/{n % 20}", "s")
            await asyncio.sleep(random.uniform(0.2, 2.0))  # holding the connection is the load
            if n % 2:
                abort(ws)
                tally.counts["churn aborted"] += 1
            else:
                await ws.close()
                tally.counts["churn closed"] += 1
        except Exception as exc:
            tally.counts[f"churn failed: {type(exc).__name__}"] += 1
        finally:
            if not ws.closed:
                abort(ws)

    pending: set[asyncio.Task[None]] = set()
    n, next_at = 0, time.monotonic()
    while True:
        n += 1
        task = asyncio.create_task(one(n))
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += 1 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def steady_subscriber(
    ws: aiohttp.ClientWebSocketResponse, tally: Tally, stop: asyncio.Event
) -> None:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        frame = json.loads(msg.data)
        if frame.get("type") == "message":
            tally.latencies.append((time.time() - frame["data"]["t"]) * 1000)
            tally.counts["delivered"] += 1
    if not stop.is_set():
        tally.counts["steady subscriber lost"] += 1


async def publisher(
    ws: aiohttp.ClientWebSocketResponse, channels: int, rate: float, tally: Tally
) -> None:
    n, next_at = 0, time.monotonic()
    while True:
        n += 1
        frame = {"type": "publish", "channel": f"steady/{n % channels}", "data": {"t": time.time()}}
        await ws.send_str(json.dumps(frame))
        tally.counts["published"] += 1
        next_at += 1 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def drain_publisher_replies(ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("type") == "error":
            tally.counts["publish error"] += 1


async def conversation(url: str, tally: Tally) -> None:
    while True:
        try:
            client = await ConversationClient.connect(url)
            await client.auth("soak-key", receiveEvents=False)
            await client.start(f"soak-user-{random.randrange(1 << 30)}")
            for _ in range(30):
                started = time.perf_counter()
                await client.send(
                    {
                        "type": "send_user_text_input",
                        "conversationId": client.conversation_id,
                        "text": "what is my order status?",
                    }
                )
                await client.wait_type("end_ai_generation_output", timeout_s=30)
                tally.turn_ms.append((time.perf_counter() - started) * 1000)
                tally.counts["turns"] += 1
                await asyncio.sleep(max(0.0, 1 - (time.perf_counter() - started)))
            with contextlib.suppress(Exception):
                await client.command("end_conversation")
            await client.close()
        except Exception as exc:
            tally.counts[f"turn failed: {type(exc).__name__}"] += 1
            await asyncio.sleep(1)


async def rest(session: aiohttp.ClientSession, http: str, tally: Tally) -> None:
    headers = {"Authorization": SECRET}
    while True:
        started = time.monotonic()
        try:
            async with session.post(
                f"{http}/v1/channels/rest-feed/publish", json={"data": 1}, headers=headers
            ) as response:
                tally.counts[f"REST publish {response.status}"] += 1
            async with session.get(f"{http}/v1/channels/steady%2F0/peers", headers=headers) as r:
                tally.counts[f"REST peers {r.status}"] += 1
        except Exception as exc:
            tally.counts[f"REST failed: {type(exc).__name__}"] += 1
        await asyncio.sleep(max(0.0, 1 - (time.monotonic() - started)))


async def presence_entries(redis: Redis) -> int:
    total = 0
    async for key in redis.scan_iter(match=f"{PREFIX}:node:*:presence"):
        kind = await redis.type(key)
        total += await (redis.scard(key) if kind == b"set" else redis.hlen(key))
    return total


async def main(args: argparse.Namespace) -> None:
    tally = Tally()
    async with private_redis() as redis_server:
        redis = Redis.from_url(redis_server.url)
        with tempfile.TemporaryDirectory(prefix="hubbub-soak-") as tmp:
            directory = Path(tmp)
            (directory / "projects").mkdir()
            (directory / "projects" / "soak.yaml").write_text(PROJECT)
            config_path = directory / "hubbub.toml"
            config_path.write_text(
                config(redis_server.url, directory / "projects", directory / "soak.db")
            )
            node = Node("soak", config_path, directory / "server.log")
            await node.start()
            connector = aiohttp.TCPConnector(limit=0)
            stop = asyncio.Event()
            async with aiohttp.ClientSession(connector=connector) as session:
                sockets = []
                readers = []
                for i in range(args.subscribers):
                    ws, _ = await open_v1(session, node.url)
                    await subscribe(ws, f"steady/{i % args.channels}", "s")
                    sockets.append(ws)
                    readers.append(asyncio.create_task(steady_subscriber(ws, tally, stop)))
                pub, _ = await open_v1(session, node.url)
                tasks = [
                    asyncio.create_task(drain_publisher_replies(pub, tally)),
                    asyncio.create_task(publisher(pub, args.channels, args.rate, tally)),
                    asyncio.create_task(churn(session, node.url, args.churn, tally)),
                    asyncio.create_task(conversation(node.url + "/ws", tally)),
                    asyncio.create_task(rest(session, node.http, tally)),
                ]
                rows = []
                started = time.monotonic()
                minute = 0
                print(
                    f"soak: {args.minutes} min ({args.warmup} warm-up), {args.subscribers} "
                    f"subscribers on {args.channels} channels at {args.rate}/s, churn "
                    f"{args.churn}/s, 1 turn/s, REST 2/s; server pid {node.pid}",
                    flush=True,
                )
                while time.monotonic() - started < args.minutes * 60:
                    minute += 1
                    await asyncio.sleep(
                        max(0.0, started + minute * args.sample_s - time.monotonic())
                    )
                    metrics = await node.metrics(session)
                    latencies, tally.latencies = tally.latencies, []
                    turns, tally.turn_ms = tally.turn_ms, []
                    row = [
                        f"{(time.monotonic() - started) / 60:.1f}",
                        f"{node.rss_kb() / 1024:.1f}",
                        node.open_fds(),
                        int(metrics.get("hubbub_asyncio_tasks", -1)),
                        int(metrics.get("hubbub_connections", -1)),
                        await presence_entries(redis),
                        await redis.dbsize(),
                        f"{percentile(latencies, 0.99):.1f}",
                        f"{percentile(turns, 0.99):.0f}" if turns else "-",
                        tally.counts["churn closed"] + tally.counts["churn aborted"],
                    ]
                    rows.append(row)
                    print(" | ".join(str(c) for c in row), flush=True)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                settle_s = 5.0
                await asyncio.sleep(settle_s)  # aborted churn sockets: the server sees EOF
                final_presence = await presence_entries(redis)
                final_metrics = await node.metrics(session)
                stop.set()
                for ws in sockets:
                    await ws.close()
                await pub.close()
                for reader in readers:
                    reader.cancel()
            alive = node.alive()
            log = node.log_text()
            await node.stop()
        await redis.aclose()

    headers = [
        "minute",
        "RSS MB",
        "fds",
        "tasks",
        "conns",
        "presence",
        "redis keys",
        "sub p99 ms",
        "turn p99 ms",
        "churned",
    ]
    print()
    print(table(headers, rows))
    steady = [r for r in rows if float(r[0]) > args.warmup]
    if steady:
        rss = [float(r[1]) for r in steady]
        fds = [int(r[2]) for r in steady]
        tasks_n = [int(r[3]) for r in steady]
        drift = (rss[-1] - rss[0]) / rss[0] * 100
        print()
        summary = [
            ["RSS drift after warm-up", f"{drift:+.2f} %", "<= 2 %", abs(drift) <= 2],
            ["fds min..max after warm-up", f"{min(fds)}..{max(fds)}", "flat", None],
            ["tasks min..max after warm-up", f"{min(tasks_n)}..{max(tasks_n)}", "flat", None],
            [
                "presence after churn stopped",
                f"{final_presence} (steady {args.subscribers})",
                "= steady subscribers",
                final_presence == args.subscribers,
            ],
            [
                "connections after churn stopped",
                int(final_metrics.get("hubbub_connections", -1)),
                f"{args.subscribers + 1}",
                int(final_metrics.get("hubbub_connections", -1)) == args.subscribers + 1,
            ],
            ["server alive", alive, "yes", alive],
            ["Tracebacks in log", log.count("Traceback"), "0", log.count("Traceback") == 0],
            ["RSS mean MB after warm-up", f"{statistics.mean(rss):.1f}", "", None],
        ]
        print(table(["check", "value", "goal", "met"], summary))
    print()
    print(table(["outcome", "count"], [[k, v] for k, v in sorted(tally.counts.items())]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--sample-s", type=float, default=60)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--churn", type=float, default=50)
    asyncio.run(main(parser.parse_args()))
