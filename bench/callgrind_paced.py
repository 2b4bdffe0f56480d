"""User-space instructions per paced delivery, counted by callgrind (repeatable on a busy box).

    .venv/bin/python bench/callgrind_paced.py [--servers hubbub,lean-raw] [--subscribers 200]

Each server from ``bench/peers.py`` runs under ``valgrind --tool=callgrind`` with instrumentation
off; the load generator connects its subscribers, and instrumentation is switched on
(``callgrind_control -i on``) after the warm-up, dumped when pacing starts (what the idle
server does per second, subtracted from the paced phase's count), off and dumped after the
paced phase (``--rate``, 10 msg/s by default). The
count covers the server process's user space only (Python, uvloop, libc up to the syscall):
the kernel's share of each ``write()`` (most of a paced delivery's CPU time, see
docs/benchmarks.md) is not in it, which is exactly what makes it the Python-side yardstick.
Under valgrind the server runs ~50x slower, hence few subscribers and a low rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import pinned, running
from peers import BENCH, ROOT, peers, setup

TOTALS = re.compile(rb"^totals: (\d+)", re.MULTILINE)


async def count(name: str, args: argparse.Namespace, tmp: Path) -> tuple[int, int]:
    peer = peers(tmp, args.before if name == "hubbub-before" else "")[name]
    os.environ.update(peer.env)  # hubbub-before: PYTHONPATH to the other commit's src/
    out = tmp / f"callgrind.{name}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *peer.spec.command,
    ]
    spec = replace(peer.spec, command=command)
    async with running(spec, 0, start_timeout_s=120.0) as (pid, port):
        load = [
            sys.executable,
            str(BENCH / "peers_load.py"),
            f"--dialect={peer.dialect}",
            f"--url=ws://127.0.0.1:{port}{peer.url_path}",
            f"--server-pid={pid}",
            "--rows=paced",
            f"--subscribers={args.subscribers}",
            f"--rate={args.rate}",
            f"--paced-s={args.seconds}",
            "--timeout=300",
            "--settle=3",
        ]
        process = await asyncio.create_subprocess_exec(
            *pinned(load, 1),
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        assert process.stderr is not None and process.stdout is not None
        marks: list[float] = []

        def control(*command: str) -> None:
            subprocess.run(
                ["callgrind_control", *command, str(pid)], check=True, capture_output=True
            )
            marks.append(time.perf_counter())

        # Three marks: on (after the warm-up), a dump when pacing starts (the idle server's
        # own work: keepalive and other timers), and off + dump when the phase is done.
        while line := (await process.stderr.readline()).decode():
            print(line, end="", file=sys.stderr)
            if "warm-up done" in line:
                control("-i", "on")
            elif "paced phase starts" in line:
                control("-d")
            elif "paced " in line and "µs/delivery" in line:
                control("-i", "off")
                control("-d")
        report = (await process.stdout.read()).decode()
        await process.wait()
    for variable in peer.env:
        os.environ.pop(variable, None)
    deliveries = int(re.search(r'"deliveries": (\d+)', report).group(1))  # type: ignore[union-attr]
    counts = []
    for number in (1, 2):
        found = TOTALS.search(Path(f"{out}.{number}").read_bytes())
        counts.append(int(found.group(1)) if found else 0)
    idle_per_s = counts[0] / (marks[1] - marks[0])
    paced = counts[1] - idle_per_s * (marks[3] - marks[1])
    return round(paced), deliveries


async def main(args: argparse.Namespace) -> None:
    setup(1000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hubbub-callgrind-") as tmp:
        for name in args.servers.split(","):
            instructions, deliveries = await count(name, args, Path(tmp))
            rows.append((name, instructions, deliveries))
    print(f"\n{args.subscribers} subscribers, {args.rate:g} msg/s for {args.seconds:g} s")
    print("| server | user-space instructions, idle work subtracted | deliveries | per delivery |")
    print("|---|---|---|---|")
    for name, instructions, deliveries in rows:
        per = instructions / max(1, deliveries)
        print(f"| {name} | {instructions:,} | {deliveries:,} | {per:,.0f} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="hubbub,lean-aiohttp,lean-raw")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--before", default="", help="git ref for server hubbub-before")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
