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

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
KEY = "pk_bench"

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


def server_specs(config_path: Path) -> dict[str, ServerSpec]:
    return {
        "hubbub": ServerSpec(
            "hubbub",
            [sys.executable, "-m", "hubbub", "serve", "--config", str(config_path)],
            re.compile(rb"Hubbub listening on http://[^:]+:(\d+)"),
        ),
        "node-ws": ServerSpec(
            "node-ws",
            ["node", str(BENCH / "baseline" / "ws_broadcast.mjs"), "0"],
            re.compile(rb"listening on (\d+)"),
        ),
    }


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
) -> dict[str, object]:
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
        result: dict[str, object] = json.loads(stdout.decode().strip().splitlines()[-1])
        return result


def render(results: dict[str, dict[str, object]], baseline: str = "node-ws") -> str:
    header = (
        f"| {'server':<8} | {'deliveries/s':>12} | {'loss':>4} | {'p50 ms':>6} | {'p99 ms':>6} "
        f"| {'server CPU':>10} | {'load CPU':>8} |"
    )
    lines = [header, "|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|"]
    for name, result in results.items():
        tp = result["throughput"]
        lat = result["latency"]
        assert isinstance(tp, dict) and isinstance(lat, dict)
        loss = tp["loss"] + lat["loss"]
        lines.append(
            f"| {name:<8} | {tp['deliveries_per_s']:>12,.0f} | {loss:>4} | {lat['p50_ms']:>6.2f} "
            f"| {lat['p99_ms']:>6.2f} | {tp['server_cpu']:>10.0%} | {tp['load_cpu']:>8.0%} |"
        )
    if "hubbub" in results and baseline in results:
        hub, base = results["hubbub"]["throughput"], results[baseline]["throughput"]
        assert isinstance(hub, dict) and isinstance(base, dict)
        ratio = hub["deliveries_per_s"] / base["deliveries_per_s"]
        lines.append("")
        lines.append(f"Hubbub / Node ws deliveries/s: {ratio:.2f}x (goal >= 1.5x, no loss)")
    return "\n".join(lines)


def choose_cpus() -> tuple[int, int] | None:
    available = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None or len(available) < 2:
        print("warning: taskset or a second CPU is missing; running unpinned", file=sys.stderr)
        return None
    return available[0], available[1]


async def main(args: argparse.Namespace) -> int:
    cpus = choose_cpus()
    names = args.servers.split(",")
    with tempfile.TemporaryDirectory(prefix="hubbub-bench-") as tmp:
        config_path = Path(tmp) / "bench.toml"
        config_path.write_text(HUBBUB_CONFIG, encoding="utf-8")
        specs = server_specs(config_path)
        unknown = [n for n in names if n not in specs]
        if unknown:
            print(f"unknown server(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        results = {name: await measure(specs[name], args, cpus) for name in names}
    print()
    print(
        f"{args.subscribers} subscribers, 1 publisher, 1 channel; throughput: {args.messages} "
        f"messages, window {args.window}; latency: {args.rate:g} msg/s for "
        f"{args.latency_seconds:g} s; load generator: {args.loadgen}; "
        f"CPUs (server, load): {cpus or 'unpinned'}"
    )
    print(render(results))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="hubbub,node-ws", help="comma-separated, in order")
    parser.add_argument("--loadgen", choices=["python", "node"], default="python")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1000, help="throughput phase")
    parser.add_argument("--warmup", type=int, default=100, help="publishes before measuring")
    parser.add_argument("--window", type=int, default=32, help="unacked publishes in flight")
    parser.add_argument("--rate", type=float, default=20.0, help="latency phase, messages/s")
    parser.add_argument("--latency-seconds", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="per server, seconds")
    parser.add_argument("--json", action="store_true", help="also print the raw results")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
