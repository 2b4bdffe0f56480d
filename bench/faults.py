"""Faults under load (issue 11): Redis paused, Redis restarted, a bad link to Redis, a node
killed. What do publishers see, how fast is the service back, is presence cleaned?

    .venv/bin/python bench/faults.py                       # every scenario
    .venv/bin/python bench/faults.py --only pause,kill --pause-s 10

Each scenario starts afresh: a private redis-server (free port), two ``hubbub serve`` nodes A
and B on it (presence TTL ``--ttl`` s), a publisher on A publishing to ``load`` at 20/s with a
requestId (each answer recorded: ack, error code, or none within 10 s), a subscriber on B,
and ``--peers`` clients on A in channel ``room`` watched by an observer on B. Then the fault:

* ``pause``: redis-server SIGSTOPped for ``--pause-s`` s (default 10), then SIGCONT;
* ``restart``: redis-server killed, started again (empty) on its port ``--down-s`` s later;
* ``link``: A reaches Redis through a network namespace (veth pair) and a TCP relay inside
  it; for ``--link-s`` s the relay delays A -> Redis by 300 ms and nftables drops 20 % of
  the packets on that leg (``numgen random mod 100 < 20 drop``, both directions);
* ``kill``: A killed with SIGKILL (the publisher is on B for this one): B's observer must see
  every peer of A leave within the TTL.

Reported per scenario: publishes during the fault (ok / backend_error / other / unanswered),
the first backend_error after the fault began, the time from the fault's end to the first
acknowledged publish and to the first delivery on B, the share acknowledged from 5 s after the
end, ack p50/p99 during the fault, presence cleaned (kill), crashes and tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from hostile import DEMO_APP, Node, open_v1, percentile, subscribe, table

from tests.support.lossy_link import LossyLink, lossy_link
from tests.support.redis import PrivateRedis, free_port


def config(redis_url: str, ttl_s: float) -> str:
    return f"""
[server]
connect_attempts_per_ip = 0

[broker]
kind = "redis"
url = "{redis_url}"
key_prefix = "faults"
presence_ttl_s = {ttl_s}
{DEMO_APP}"""


@dataclass
class Publisher:
    ws: aiohttp.ClientWebSocketResponse
    sent: dict[str, float] = field(default_factory=dict)
    # (sent at, outcome, latency ms)
    outcomes: list[tuple[float, str, float]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        n, next_at = 0, time.monotonic()
        reader = asyncio.create_task(self._read())
        while not stop.is_set() and not self.ws.closed:
            n += 1
            rid = f"p{n}"
            self.sent[rid] = time.monotonic()
            frame = {"type": "publish", "channel": "load", "data": {"t": time.time()}}
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(json.dumps({**frame, "requestId": rid}))
            next_at += 0.05
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(1)
        reader.cancel()
        for sent_at in self.sent.values():
            self.outcomes.append((sent_at, "unanswered", 0.0))

    async def _read(self) -> None:
        async for msg in self.ws:
            frame = json.loads(msg.data)
            rid = frame.get("requestId")
            if rid in self.sent:
                sent_at = self.sent.pop(rid)
                outcome = "ok" if frame["type"] == "ack" else frame.get("code", frame["type"])
                self.outcomes.append((sent_at, outcome, (time.monotonic() - sent_at) * 1000))
        # The socket closed: whatever is pending stays unanswered.


async def deliveries(ws: aiohttp.ClientWebSocketResponse, seen: list[tuple[float, float]]) -> None:
    async for msg in ws:
        frame = json.loads(msg.data)
        if frame.get("type") == "message":
            seen.append((time.monotonic(), frame["data"]["t"]))


async def presence_watch(ws: aiohttp.ClientWebSocketResponse, left: dict[str, float]) -> None:
    async for msg in ws:
        frame = json.loads(msg.data)
        if frame.get("type") == "presence":
            for peer in frame.get("left", []):
                left[peer["peerId"]] = time.monotonic()


async def scenario(name: str, args: argparse.Namespace) -> list[Any]:
    directory = Path(tempfile.mkdtemp(prefix=f"hubbub-fault-{name}-"))
    redis = PrivateRedis(free_port(), directory)
    bind: list[str] = []
    link: LossyLink | None = None
    async with contextlib.AsyncExitStack() as stack:
        if name == "link":
            # The veth must exist before redis-server can bind the host side of it.
            link = await stack.enter_async_context(lossy_link(redis.port))
            bind = ["--bind", f"127.0.0.1 {link.host_ip}", "--protected-mode", "no"]
            a_url = link.url
        await redis.start(*bind)
        stack.push_async_callback(redis.stop)
        if name != "link":
            a_url = redis.url
        (directory / "a.toml").write_text(config(a_url, args.ttl))
        (directory / "b.toml").write_text(config(redis.url, args.ttl))
        a = Node("A", directory / "a.toml", directory / "a.log")
        b = Node("B", directory / "b.toml", directory / "b.log")
        await asyncio.gather(a.start(), b.start())
        stack.push_async_callback(b.stop)
        stack.push_async_callback(a.stop)
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        )
        pub_node = b if name == "kill" else a
        pub_ws, _ = await open_v1(session, pub_node.url)
        sub_ws, _ = await open_v1(session, b.url)
        await subscribe(sub_ws, "load", "s")
        observer, _ = await open_v1(session, b.url)
        await subscribe(observer, "room", "s")
        peers = []
        for _ in range(args.peers):
            ws, welcome = await open_v1(session, a.url)
            await subscribe(ws, "room", "s")
            peers.append(welcome["peerId"])
        seen: list[tuple[float, float]] = []
        left: dict[str, float] = {}
        watchers = [
            asyncio.create_task(deliveries(sub_ws, seen)),
            asyncio.create_task(presence_watch(observer, left)),
        ]
        publisher = Publisher(pub_ws)
        stop = asyncio.Event()
        publishing = asyncio.create_task(publisher.run(stop))
        await asyncio.sleep(3)  # steady traffic before the fault
        fault_start = time.monotonic()
        if name == "pause":
            assert redis.process is not None
            redis.process.send_signal(signal.SIGSTOP)
            await asyncio.sleep(args.pause_s)
            redis.process.send_signal(signal.SIGCONT)
        elif name == "restart":
            await redis.stop()
            await asyncio.sleep(args.down_s)
            await redis.start(*bind)
        elif name == "link":
            assert link is not None
            await link.set(bad=True)
            await asyncio.sleep(args.link_s)
            await link.set(bad=False)
        elif name == "kill":
            assert a.process is not None
            a.process.kill()
            async with asyncio.timeout(args.ttl * 4):
                while len(set(peers) & set(left)) < len(peers):
                    await asyncio.sleep(0.05)  # presence frames arrive on their own: poll
        fault_end, fault_end_wall = time.monotonic(), time.time()
        await asyncio.sleep(args.after_s)
        stop.set()
        await publishing
        for watcher in watchers:
            watcher.cancel()
        alive = [n.name for n in (a, b) if not n.alive() and not (name == "kill" and n is a)]
        logs = a.log_text() + b.log_text()
        if args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for node in (a, b):
                (keep / f"{name}-{node.name}.log").write_text(node.log_text())
    shutil.rmtree(directory, ignore_errors=True)

    during = [o for o in publisher.outcomes if fault_start <= o[0] < fault_end]
    after = [o for o in publisher.outcomes if o[0] >= fault_end + 5]
    counts = {k: sum(1 for o in during if o[1] == k) for k in ("ok", "backend_error", "unanswered")}
    other = len(during) - sum(counts.values())
    errors_at = [o[0] + o[2] / 1000 for o in publisher.outcomes if o[1] == "backend_error"]
    first_error = min((t for t in errors_at if t >= fault_start), default=None)
    acks_after = [
        o[0] + o[2] / 1000 for o in publisher.outcomes if o[1] == "ok" and o[0] >= fault_end
    ]
    delivered_after = [at for at, published in seen if published >= fault_end_wall]
    ok_latency = [o[2] for o in during if o[1] == "ok"]
    cleaned = (
        f"{max(left[p] for p in peers) - fault_start:.1f} s (TTL {args.ttl:g})"
        if name == "kill" and all(p in left for p in peers)
        else "-"
    )
    return [
        name,
        f"{fault_end - fault_start:.1f}",
        f"{counts['ok']} / {counts['backend_error']} / {other} / {counts['unanswered']}",
        f"{first_error - fault_start:.1f}" if first_error else "-",
        f"{min(acks_after) - fault_end:.2f}" if acks_after else "never",
        f"{min(delivered_after) - fault_end:.2f}" if delivered_after else "never",
        f"{sum(1 for o in after if o[1] == 'ok')}/{len(after)}",
        f"{percentile(ok_latency, 0.5):.0f} / {percentile(ok_latency, 0.99):.0f}"
        if ok_latency
        else "-",
        cleaned,
        ", ".join(alive) if alive else "none",
        logs.count("Traceback"),
    ]


async def main(args: argparse.Namespace) -> None:
    rows = []
    for name in args.only.split(","):
        print(f"scenario {name} ...", flush=True)
        rows.append(await scenario(name, args))
        print("  " + " | ".join(str(c) for c in rows[-1]), flush=True)
    headers = [
        "fault",
        "lasted s",
        "during: ok / backend_error / other / unanswered",
        "first backend_error s",
        "end -> first ack s",
        "end -> first delivery on B s",
        "ok from end+5 s",
        "ack p50/p99 during ms",
        "presence cleaned",
        "crashed",
        "tracebacks",
    ]
    print()
    print(table(headers, rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="pause,restart,link,kill")
    parser.add_argument("--pause-s", type=float, default=10)
    parser.add_argument("--down-s", type=float, default=3)
    parser.add_argument("--link-s", type=float, default=20)
    parser.add_argument("--ttl", type=float, default=5)
    parser.add_argument("--peers", type=int, default=30)
    parser.add_argument("--after-s", type=float, default=10)
    parser.add_argument("--keep-logs", default="", help="a directory for the nodes' logs")
    asyncio.run(main(parser.parse_args()))
