"""Webhooks and proxies beside the realtime path: what they cost it, side by side in one run.

    .venv/bin/python bench/hooks.py [--rate 100] [--seconds 5] [--rounds 3]

Five servers run at once, each its own ``hubbub serve`` process, and one backend process (an
aiohttp app: a publish proxy that allows everything, a webhook endpoint that accepts, and one
that accepts connections but never answers):

* ``baseline``          no hooks;
* ``publish proxy``     the key has a ``publish_proxy``: every publish waits for the backend;
* ``webhooks, up``      every event (``client_event`` for each publish) goes to a live endpoint;
* ``webhooks, down``    the same, to a port where nothing listens (refused, retried);
* ``webhooks, hanging`` the same, to an endpoint that never answers (timeouts, retried).

One publisher and one subscriber (raw WebSockets in this process) per server; every server
gets the same fixed rate of publishes, interleaved message by message (in a rotating order), so
all of them live through the same moments of machine noise. Reported per server: publish ->
ack latency (what the publisher waits, the proxy's verdict included), publish -> delivery
latency at the subscriber (the realtime path), both p50/p99, and the server process's CPU per
publish (/proc/<pid>/stat; the backend's CPU is not counted). Ratios are against ``baseline``
in the same run; the goals (issue 13): a dead webhook backend moves the delivery p99 by < 10%,
the publish proxy adds < 2 ms to the ack p50.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.support.server import ServerProcess, running_server  # noqa: E402

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
CHANNEL = "bench"

BASE_TOML = """
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
{key_extra}
{webhook}
"""

WEBHOOK = """
[[apps.webhooks]]
name = "bench"
url = "{url}"
secret = "whsec_bench"
timeout_ms = 1000
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile_ms(values_s: list[float], fraction: float) -> float:
    if not values_s:
        return float("nan")
    ordered = sorted(values_s)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


# --- the backend (its own process) -----------------------------------------------------------


async def serve_backend() -> None:
    async def allow(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({})

    async def hang(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_post("/publish", allow)
    app.router.add_post("/hooks", allow)
    app.router.add_post("/hang", hang)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    print(server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def backend_process() -> AsyncIterator[tuple[int, int]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-backend", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            port = int((await process.stdout.readline()).decode())
        yield port, process.pid
    finally:
        process.kill()
        await process.wait()


# --- the clients -----------------------------------------------------------------------------


@dataclass
class Stats:
    ack_s: list[float] = field(default_factory=list)
    delivery_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    publishes: int = 0


class Pair:
    """A publisher and a subscriber on one server."""

    def __init__(self, server: ServerProcess, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.sent: dict[str, float] = {}
        self.pending_acks: set[str] = set()
        self.pending_deliveries: set[int] = set()
        self.done = asyncio.Event()
        self.stats = Stats()
        self._readers: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        url = f"{self.server.http_url}/v1?key=pk_bench"
        self.publisher = await self.session.ws_connect(url, autoping=True)
        self.subscriber = await self.session.ws_connect(url, autoping=True)
        await self.publisher.receive()  # welcome
        await self.subscriber.receive()
        await self.subscriber.send_json({"type": "subscribe", "channel": CHANNEL, "requestId": "s"})
        while json.loads((await self.subscriber.receive()).data).get("type") != "ack":
            pass
        self._readers = [
            asyncio.create_task(self._read_acks()),
            asyncio.create_task(self._read_deliveries()),
        ]

    def _check_done(self) -> None:
        if not self.pending_acks and not self.pending_deliveries:
            self.done.set()

    async def _read_acks(self) -> None:
        async for message in self.publisher:
            now = time.perf_counter()
            frame = json.loads(message.data)
            request_id = frame.get("requestId")
            if frame.get("type") == "ack" and request_id in self.pending_acks:
                self.pending_acks.discard(request_id)
                self.stats.ack_s.append(now - self.sent.pop(request_id))
                self._check_done()

    async def _read_deliveries(self) -> None:
        async for message in self.subscriber:
            now = time.perf_counter()
            frame = json.loads(message.data)
            if frame.get("type") == "message":
                data = frame["data"]
                self.pending_deliveries.discard(data["i"])
                self.stats.delivery_s.append(now - data["t"])
                self._check_done()

    def cpu_now(self) -> float:
        return cpu_seconds(self.server.process.pid)

    async def publish(self, i: int) -> None:
        request_id = f"p{i}"
        sent_at = time.perf_counter()
        self.sent[request_id] = sent_at
        self.pending_acks.add(request_id)
        self.pending_deliveries.add(i)
        self.done.clear()
        await self.publisher.send_str(
            json.dumps(
                {
                    "type": "publish",
                    "channel": CHANNEL,
                    "data": {"i": i, "t": sent_at},
                    "requestId": request_id,
                }
            )
        )

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await self.publisher.close()
        await self.subscriber.close()


# --- orchestration ---------------------------------------------------------------------------


def setups(backend_port: int) -> dict[str, str]:
    backend = f"http://127.0.0.1:{backend_port}"
    dead = f"http://127.0.0.1:{free_port()}/hooks"
    return {
        "baseline": BASE_TOML.format(key_extra="", webhook=""),
        "publish proxy": BASE_TOML.format(
            key_extra=f'publish_proxy = "{backend}/publish"', webhook=""
        ),
        "webhooks, up": BASE_TOML.format(
            key_extra="", webhook=WEBHOOK.format(url=f"{backend}/hooks")
        ),
        "webhooks, down": BASE_TOML.format(key_extra="", webhook=WEBHOOK.format(url=dead)),
        "webhooks, hanging": BASE_TOML.format(
            key_extra="", webhook=WEBHOOK.format(url=f"{backend}/hang")
        ),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="publishes/s per server")
    parser.add_argument("--seconds", type=float, default=5.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    async with contextlib.AsyncExitStack() as stack:
        backend_port, _ = await stack.enter_async_context(backend_process())
        servers = {
            name: await stack.enter_async_context(running_server(toml))
            for name, toml in setups(backend_port).items()
        }
        session = await stack.enter_async_context(aiohttp.ClientSession())
        pairs = {name: Pair(server, session) for name, server in servers.items()}
        for pair in pairs.values():
            await pair.open()
        await run(list(pairs.values()), 50, args.rate, 0)  # warm-up: pools, caches
        for pair in pairs.values():
            pair.stats = Stats()
        for round_number in range(args.rounds):
            await run(list(pairs.values()), count, args.rate, 1000 + round_number * count)
        for pair in pairs.values():
            await pair.close()
    report(pairs, args)


async def run(pairs: list[Pair], count: int, rate: float, first: int) -> None:
    """Publish ``count`` messages at ``rate`` on every server, interleaved message by message
    (in a rotating order), so all servers see the same moments of machine noise."""
    cpu_before = [pair.cpu_now() for pair in pairs]
    start = time.perf_counter()
    for n in range(count):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        shift = n % len(pairs)
        for pair in pairs[shift:] + pairs[:shift]:
            await pair.publish(first + n)
    async with asyncio.timeout(120):
        for pair in pairs:
            await pair.done.wait()
    for pair, before in zip(pairs, cpu_before, strict=True):
        pair.stats.cpu_s += pair.cpu_now() - before
        pair.stats.publishes += count


def report(pairs: dict[str, Pair], args: argparse.Namespace) -> None:
    base = pairs["baseline"].stats
    base_ack_p50 = percentile_ms(base.ack_s, 0.5)
    base_p99 = percentile_ms(base.delivery_s, 0.99)
    print(
        f"\n{args.rounds} rounds x {args.seconds:g} s at {args.rate:g} publishes/s per server "
        f"({sum(p.stats.publishes for p in pairs.values())} publishes)\n"
    )
    header = (
        "| server | ack p50 ms | ack p99 ms | delivery p50 ms | delivery p99 ms "
        "| delivery p99 vs baseline | CPU µs/publish |"
    )
    print(header)
    print("|---|---|---|---|---|---|---|")
    for name, pair in pairs.items():
        stats = pair.stats
        p99 = percentile_ms(stats.delivery_s, 0.99)
        cpu_us = stats.cpu_s / max(1, stats.publishes) * 1e6
        print(
            f"| {name} | {percentile_ms(stats.ack_s, 0.5):.2f} | "
            f"{percentile_ms(stats.ack_s, 0.99):.2f} | "
            f"{percentile_ms(stats.delivery_s, 0.5):.2f} | {p99:.2f} | "
            f"{(p99 / base_p99 - 1) * 100:+.0f}% | {cpu_us:.0f} |"
        )
    proxy_added = percentile_ms(pairs["publish proxy"].stats.ack_s, 0.5) - base_ack_p50
    down_p99 = percentile_ms(pairs["webhooks, down"].stats.delivery_s, 0.99)
    hanging_p99 = percentile_ms(pairs["webhooks, hanging"].stats.delivery_s, 0.99)
    print(
        f"\npublish proxy adds {proxy_added:.2f} ms to the ack p50 (goal < 2 ms); "
        f"a dead webhook backend moves the delivery p99 by {(down_p99 / base_p99 - 1) * 100:+.1f}%"
        f" (refused) / {(hanging_p99 / base_p99 - 1) * 100:+.1f}% (hanging) (goal < 10%)"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-backend"]:
        asyncio.run(serve_backend())
    else:
        asyncio.run(main())
