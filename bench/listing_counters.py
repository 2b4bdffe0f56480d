"""What the listings' per-connection counters cost the fan-out loop, two source trees side by side.

    .venv/bin/python bench/listing_counters.py /path/to/baseline/src src

Each tree runs the node's local fan-out (``LocalRoutes.deliver_publication``) in its own
process: 1,000 subscribers of one channel, sinks that only count, 300 publications per pass,
the best of 7 passes; the trees alternate for ``--rounds`` rounds and the best of each is
reported. The issue 14 change adds one integer increment per recipient (``framesOut``); this
is the number to compare, in isolation from sockets (a real delivery costs ~1 µs end to end,
see "Fan-out" in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

MEASURE = """
import time
from hubbub.core.broker import PresenceEntry, Publication
from hubbub.core.connection import Connection, Subscription
from hubbub.core.principal import ChannelScope, Principal
from hubbub.core.routes import LocalRoutes


class Sink:
    __slots__ = ("n",)

    def __init__(self):
        self.n = 0

    def push(self, frame):
        self.n += 1


routes = LocalRoutes()
for i in range(1000):
    principal = Principal("app", f"p{i}", "k", frozenset(), ChannelScope(()))
    conn = Connection(
        id=f"n:{i}", principal=principal, sink=Sink(), bucket=None,
        presence_entry=PresenceEntry(f"p{i}", None),
    )
    routes.add_channel_member(conn, "room", Subscription(False, None))
publication = Publication("app", "room", "s", b'{"x":1}', None, None)
best = 1e9
for _ in range(7):
    began = time.perf_counter()
    for _ in range(300):
        routes.deliver_publication(publication)
    best = min(best, (time.perf_counter() - began) / 300_000)
print(best * 1e9)
"""


def measure(src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, type=Path, help="baseline src, then the one to test")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    results: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            results[tree].append(measure(tree))
    print("| tree | best ns per delivery | median |")
    print("|---|---|---|")
    for tree, values in results.items():
        values.sort()
        print(f"| {tree} | {values[0]:.1f} | {values[len(values) // 2]:.1f} |")
    base, new = (min(results[tree]) for tree in args.trees)
    print(f"\nadded: {new - base:+.1f} ns per delivery ({(new / base - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
