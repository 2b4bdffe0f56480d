"""Fan-out benchmark: Hubbub against a naive Node ``ws`` broadcast server, in one run.

    .venv/bin/python bench/fanout.py            # or: make bench

Scenario: 1,000 subscribers on one channel and one publisher, over loopback. Each server runs
pinned to CPU 0 and the load generator (``bench/fanout_load.py``, or ``fanout_load.mjs`` with
``--loadgen node``) to CPU 1 with ``taskset``, so the two never compete for a core. Hubbub runs
with rate limiting and the per-IP connect limit off and a slow-consumer mark far above what the
publish window can queue. The baseline is ``bench/baseline/ws_broadcast.mjs``.

For each server the load generator measures

* throughput: ``--messages`` publishes as fast as the server acknowledges them (at most
  ``--window`` in flight); deliveries/s = messages received / elapsed, and loss = deliveries
  that never arrived (must be 0);
* latency: publish -> deliver at a fixed ``--rate`` for ``--latency-seconds``, p50 and p99.

Numbers on a shared machine are noisy; the ratio between the two servers in the same run is
what the benchmark reports on (the goal: Hubbub >= 1.5x the baseline's deliveries/s, no loss).

History cost (issue 12): ``--servers hubbub,hubbub-history,hubbub-redis,hubbub-redis-history``
runs Hubbub without and with ``[[apps.channels]] pattern = "**"`` (history_size 100) on the
memory broker and on the Redis broker (a private redis-server on a free port), side by side,
and reports how much server CPU per delivery history adds (goal: memory <= 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
KEY = "pk_bench"
sys.path.insert(0, str(ROOT))

from tests.support.redis import private_redis  # noqa: E402

HISTORY_CHANNELS = """
[[apps.channels]]
pattern = "**"
history_size = 100
history_ttl_s = 600
"""

HUBBUB_CONFIG = f"""
[server]
host = "127.0.0.1"
port = 0
connect_attempts_per_ip = 0          # 1,000 connects from one address
slow_consumer_bytes = 268435456      # never the limit here: the publish window bounds queues
keepalive_interval_s = 300.0

[limits]
rate_per_second = 0
rate_burst = 0

[[apps]]
id = "bench"

[[apps.keys]]
id = "{KEY}"
kind = "publishable"
channel_patterns = ["**"]
# No "presence": the baseline has none, and 1,000 joins would otherwise send ~500k deltas.
actions = ["publish", "subscribe"]
"""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: list[str]
    ready: re.Pattern[bytes]


def server_specs(config_dir: Path, redis_url: str | None) -> dict[str, ServerSpec]:
    configs = {"hubbub": HUBBUB_CONFIG, "hubbub-history": HUBBUB_CONFIG + HISTORY_CHANNELS}
    if redis_url is not None:
        broker = f'\n[broker]\nkind = "redis"\nurl = "{redis_url}"\n'
        configs["hubbub-redis"] = HUBBUB_CONFIG + broker
        configs["hubbub-redis-history"] = HUBBUB_CONFIG + broker + HISTORY_CHANNELS
    ready = re.compile(rb"Hubbub listening on http://[^:]+:(\d+)")
    specs: dict[str, ServerSpec] = {}
    for name, text in configs.items():
        path = config_dir / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        command = [sys.executable, "-m", "hubbub", "serve", "--config", str(path)]
        specs[name] = ServerSpec(name, command, ready)
    specs["node-ws"] = ServerSpec(
        "node-ws",
        ["node", str(BENCH / "baseline" / "ws_broadcast.mjs"), "0"],
        re.compile(rb"listening on (\d+)"),
    )
    return specs


def pinned(command: list[str], cpu: int | None) -> list[str]:
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


async def _drain(stream: asyncio.StreamReader, lines: list[bytes]) -> None:
    while line := await stream.readline():
        lines.append(line)


@contextlib.asynccontextmanager
async def running(
    spec: ServerSpec, cpu: int | None, start_timeout_s: float = 20.0
) -> AsyncIterator[tuple[int, int]]:
    """Start a server, yield (pid, port), and stop it (SIGTERM, then SIGKILL) afterwards."""
    process = await asyncio.create_subprocess_exec(
        *pinned(spec.command, cpu),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    assert process.stdout is not None
    output: list[bytes] = []
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(start_timeout_s):
            while True:
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError(f"{spec.name} exited: {b''.join(output).decode()}")
                output.append(line)
                if found := spec.ready.search(line):
                    break
        drain = asyncio.create_task(_drain(process.stdout, output))
        # taskset execs the server, so this pid is the server's own.
        yield process.pid, int(found.group(1))
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain


def loadgen_command(
    args: argparse.Namespace, port: int, server_pid: int, cpus: tuple[int, int] | None
) -> list[str]:
    program = (
        ["node", str(BENCH / "fanout_load.mjs")]
        if args.loadgen == "node"
        else [sys.executable, str(BENCH / "fanout_load.py")]
    )
    return [
        *program,
        f"--url=ws://127.0.0.1:{port}/v1?key={KEY}",
        f"--subscribers={args.subscribers}",
        f"--messages={args.messages}",
        f"--warmup={args.warmup}",
        f"--window={args.window}",
        f"--rate={args.rate}",
        f"--latency-seconds={args.latency_seconds}",
        f"--server-pid={server_pid}",
        f"--watch-cpus={','.join(map(str, cpus or ()))}",
    ]


async def measure(
    spec: ServerSpec, args: argparse.Namespace, cpus: tuple[int, int] | None
) -> dict[str, Any]:
    print(f"== {spec.name}", file=sys.stderr, flush=True)
    async with running(spec, cpus[0] if cpus else None) as (pid, port):
        load = await asyncio.create_subprocess_exec(
            *pinned(loadgen_command(args, port, pid, cpus), cpus[1] if cpus else None),
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            stdout, _ = await asyncio.wait_for(load.communicate(), args.timeout)
        finally:
            if load.returncode is None:
                load.kill()
                await load.wait()
        if load.returncode != 0:
            raise RuntimeError(f"load generator failed against {spec.name} ({load.returncode})")
        result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
        return result


def cpu_us_per_delivery(throughput: dict[str, Any]) -> float:
    """Server process CPU per delivery: the figure least moved by other load on the machine."""
    cpu_s = throughput["server_cpu"] * throughput["elapsed_s"]
    return cpu_s / max(1, throughput["deliveries"]) * 1e6


def render(results: dict[str, dict[str, Any]], baseline: str = "node-ws") -> str:
    """The summary table. CPU columns cover the throughput phase: the process's own CPU time
    per second, then in brackets how busy its whole core was (interrupts and, on a shared
    machine, other people's processes included). µs/delivery counts only the server process's
    own time (user + system), not the kernel's loopback work done in interrupt context."""
    columns = [
        "server",
        "deliveries/s",
        "loss",
        "p50 ms",
        "p99 ms",
        "server CPU",
        "server µs/delivery",
        "load CPU",
    ]
    rows = []
    for name, result in results.items():
        throughput, latency = result["throughput"], result["latency"]
        busy = throughput["cpu_busy"] or [float("nan"), float("nan")]
        rows.append(
            [
                name,
                f"{throughput['deliveries_per_s']:,.0f}",
                str(throughput["loss"] + latency["loss"]),
                f"{latency['p50_ms']:.1f}",
                f"{latency['p99_ms']:.1f}",
                f"{throughput['server_cpu']:.0%} ({busy[0]:.0%})",
                f"{cpu_us_per_delivery(throughput):.2f}",
                f"{throughput['load_cpu']:.0%} ({busy[1]:.0%})",
            ]
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        rest = [f"{cell:>{width}}" for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    for plain, recorded, label in (
        ("hubbub", "hubbub-history", "memory"),
        ("hubbub-redis", "hubbub-redis-history", "redis"),
    ):
        if plain in results and recorded in results:
            off = cpu_us_per_delivery(results[plain]["throughput"])
            on = cpu_us_per_delivery(results[recorded]["throughput"])
            goal = " (goal: <= 10 %)" if label == "memory" else ""
            out.append("")
            out.append(
                f"History on/off ({label}), server CPU per delivery: {on:.2f} / {off:.2f} µs "
                f"= {on / off:.2f}x, {100 * (on / off - 1):+.1f} %{goal}"
            )
    if "hubbub" in results and baseline in results:
        hub = results["hubbub"]["throughput"]["deliveries_per_s"]
        base = results[baseline]["throughput"]["deliveries_per_s"]
        out.append("")
        out.append(f"Hubbub / Node ws deliveries/s: {hub / base:.2f}x (goal: >= 1.5x with no loss)")
        cost = cpu_us_per_delivery(results[baseline]["throughput"]) / cpu_us_per_delivery(
            results["hubbub"]["throughput"]
        )
        out.append(f"Node ws / Hubbub server CPU per delivery: {cost:.2f}x")
    return "\n".join(out)


def choose_cpus() -> tuple[int, int] | None:
    available = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None or len(available) < 2:
        print("warning: taskset or a second CPU is missing; running unpinned", file=sys.stderr)
        return None
    return available[0], available[1]


async def main(args: argparse.Namespace) -> int:
    cpus = choose_cpus()
    names = args.servers.split(",")
    rounds: list[dict[str, dict[str, Any]]] = []
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="hubbub-bench-"))
        redis_url = None
        if any("redis" in name for name in names):
            redis_url = (await stack.enter_async_context(private_redis())).url
        specs = server_specs(Path(tmp), redis_url)
        unknown = [n for n in names if n not in specs]
        if unknown:
            print(f"unknown server(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        for number in range(args.rounds):
            # Alternate the order so neither server always runs in the other's wake.
            order = names if number % 2 == 0 else names[::-1]
            measured = {name: await measure(specs[name], args, cpus) for name in order}
            rounds.append({name: measured[name] for name in names})
    print()
    print(
        f"{args.subscribers} subscribers, 1 publisher, 1 channel; throughput: {args.messages} "
        f"messages, window {args.window}; latency: {args.rate:g} msg/s for "
        f"{args.latency_seconds:g} s; load generator: {args.loadgen}; "
        f"CPUs (server, load): {cpus or 'unpinned'}"
    )
    for number, results in enumerate(rounds, 1):
        print(f"\nround {number}")
        print(render(results))
    if len(rounds) > 1 and "hubbub" in names and "node-ws" in names:
        ratios = [
            r["hubbub"]["throughput"]["deliveries_per_s"]
            / r["node-ws"]["throughput"]["deliveries_per_s"]
            for r in rounds
        ]
        print(f"\nHubbub / Node ws per round: {', '.join(f'{x:.2f}x' for x in ratios)}")
    if args.json:
        print(json.dumps(rounds, indent=2))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="hubbub,node-ws", help="comma-separated, in order")
    parser.add_argument("--loadgen", choices=["python", "node"], default="python")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500, help="throughput phase")
    parser.add_argument("--warmup", type=int, default=100, help="publishes before measuring")
    parser.add_argument("--window", type=int, default=32, help="unacked publishes in flight")
    parser.add_argument("--rate", type=float, default=20.0, help="latency phase, messages/s")
    parser.add_argument("--latency-seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2, help="each runs every server once")
    parser.add_argument("--timeout", type=float, default=120.0, help="per server, seconds")
    parser.add_argument("--json", action="store_true", help="also print the raw results")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
