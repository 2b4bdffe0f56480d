"""Sample a ``bench/peers.py`` server with py-spy while one of its rows runs.

    .venv/bin/python bench/profile_server.py --server hubbub --rows paced [--native]
    .venv/bin/python bench/profile_server.py --server hubbub --rows churn --churn 3000

The server runs pinned to CPU 0 and the load generator to CPU 1, as in ``peers.py``; py-spy
attaches to the server once its subscribers are connected... except that py-spy cannot know
when setup ends, so the rows are chosen to be dominated by the measured phase (``paced`` with
200 subscribers connects in well under a second and then paces for ``--paced-seconds``).
Prints the heaviest functions by own time (the leaf of each sample) and by inclusive time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import pinned, running
from peers import BENCH, ROOT, peers, setup

# The load generator's stderr lines that open and close each profiled phase.
PHASES = {
    "paced": ("subscribers in", "paced "),
    "burst": ("subscribers in", "burst "),
    "churn": ("churn:", "per server CPU-second"),
    "rss": ("idle RSS", "KiB/connection"),
}


def summarize(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
            if " (" in f
            else f
            for f in stack.split(";")
        ]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    out = [f"{total} samples", "", "own time:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


async def main(args: argparse.Namespace) -> None:
    setup(1000)
    with tempfile.TemporaryDirectory(prefix="hubbub-profile-") as tmp:
        peer = peers(Path(tmp))[args.server]
        raw = Path(tmp) / "profile.txt"
        async with running(peer.spec, 0) as (pid, port):
            command = [
                sys.executable,
                str(BENCH / "peers_load.py"),
                f"--dialect={peer.dialect}",
                f"--url=ws://127.0.0.1:{port}{peer.url_path}",
                f"--server-pid={pid}",
                f"--rows={args.rows}",
                f"--subscribers={args.subscribers}",
                f"--paced-s={args.paced_seconds}",
                f"--churn={args.churn}",
            ]
            spy = [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "--output",
                str(raw),
            ]
            # Native frames need the process stopped while sampled; Python frames alone do not.
            spy.append("--native" if args.native else "--nonblocking")
            if args.idle:
                spy.append("--idle")
            load = await asyncio.create_subprocess_exec(
                *pinned(command, 1),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=ROOT,
            )
            assert load.stderr is not None and load.stdout is not None
            # Sample only the measured phase: from the load generator's "setup done" line to
            # its line reporting the phase's result.
            begin, finish = PHASES[args.rows]
            profiler: subprocess.Popen[bytes] | None = None
            while line := (await load.stderr.readline()).decode():
                print(line, end="", file=sys.stderr)
                if profiler is None and begin in line:
                    profiler = subprocess.Popen(
                        spy, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                    )
                elif profiler is not None and finish in line:
                    profiler.send_signal(2)  # SIGINT: py-spy writes its output and exits
                    _, errors = profiler.communicate(timeout=60)
                    if not raw.exists():
                        raise RuntimeError(f"py-spy wrote nothing: {errors.decode()[-2000:]}")
            stdout = await load.stdout.read()
            await load.wait()
        print(json.dumps(json.loads(stdout.decode().splitlines()[-1]), indent=1))
        print(summarize(raw, args.top))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="hubbub")
    parser.add_argument("--rows", default="paced")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--churn", type=int, default=3000)
    parser.add_argument("--rate", type=int, default=250, help="samples/s")
    parser.add_argument("--native", action="store_true", help="C frames too (uvloop, kernel)")
    parser.add_argument("--idle", action="store_true", help="include idle samples")
    parser.add_argument("--top", type=int, default=25)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
