"""Where an idle, subscribed ``/v1`` connection's bytes go: a census of the server's objects.

    .venv/bin/python bench/census.py [--connections 1000] [--server hubbub|lean-...]

Runs a Hubbub server (the same config as ``bench/peers.py``: JWT connects, no presence) *in
this process* with ``tracemalloc`` on, opens ``--connections`` subscribed connections from a
``bench/peers_load.py --scenario hold`` subprocess (so no client object is counted), and
compares the heap before and after:

* by type: GC-tracked objects that appeared (``gc.get_objects()``), count and
  ``sys.getsizeof`` bytes per connection (containers and class instances; a ``__slots__`` or
  managed-dict instance's size includes its values);
* by allocation site: ``tracemalloc`` statistics grouped by file and by line, which also count
  what the GC does not track (bytes, str, uvloop's libuv handles, buffers);
* RSS growth per connection, for comparison with the traced total.

A warm-up of 50 connections comes first, so lazily created server state (a channel's first
member, caches) is not charged to the measured ones.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import types
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import HUBBUB_CONFIG
from peers_load import rss_kib

BENCH = Path(__file__).resolve().parent
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def type_census(*skip: object) -> tuple[Counter[str], Counter[str]]:
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    skipped = {id(obj) for obj in skip}
    skipped.add(id(skipped))
    for obj in gc.get_objects():
        if id(obj) in skipped:
            continue
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    return counts, sizes


SKIP_TYPES = (type, types.ModuleType, types.BuiltinFunctionType, types.FunctionType, types.CodeType)


def one_connection(before: set[int]) -> list[tuple[str, str, int]]:
    """Objects reachable from one Connection and its transport's protocol that did not exist
    before the measured connects: (path of owner types, type, getsizeof). Shared registries
    (a container with more than 20 items, a channel's members) are not entered."""
    from aiohttp.web_protocol import RequestHandler

    from hubbub.core.connection import Connection

    conn = next(o for o in gc.get_objects() if type(o) is Connection and id(o) not in before)
    transport = conn.sink._transport  # type: ignore[attr-defined]
    handler = transport.get_protocol()
    roots = [conn, handler, transport]
    # Shared by every connection (the lean socket points at them): not this connection's.
    shared = getattr(handler, "_shared", None)
    if shared is not None:
        before.update(id(o) for o in (shared, shared.loop, shared.node, shared.flusher))
        before.update(id(o) for o in (shared.keepalive, shared.lingering, shared.closing))
    if isinstance(handler, RequestHandler):  # the aiohttp /v1 (before issue 16's lean one)
        roots.append(handler._task_handler)
    seen: set[int] = set()
    found: list[tuple[str, str, int]] = []
    queue = [(root, type(root).__qualname__) for root in roots]
    while queue:
        obj, path = queue.pop(0)
        if id(obj) in seen or id(obj) in before or isinstance(obj, SKIP_TYPES):
            continue
        seen.add(id(obj))
        found.append((path, type(obj).__qualname__, sys.getsizeof(obj)))
        if isinstance(obj, (set, frozenset, dict, list, tuple)) and len(obj) > 20:
            continue
        if path.count(" > ") >= 6:
            continue
        for child in gc.get_referents(obj):
            if isinstance(child, (int, float, bool)) or child is None:
                continue
            queue.append(
                (child, f"{path} > {type(obj).__qualname__}" if obj not in roots else path)
            )
    return found


def hold(port: int, count: int, path: str = "/v1") -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        str(BENCH / "peers_load.py"),
        "--dialect=hubbub",
        f"--url=ws://127.0.0.1:{port}{path}",
        f"--server-pid={os.getpid()}",
        "--scenario=hold",
        f"--count={count}",
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None
    return process


async def wait_ready(process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    line = await asyncio.get_running_loop().run_in_executor(None, process.stdout.readline)
    if line.strip() != b"ready":
        raise RuntimeError(f"hold process failed: {line!r}")


def shorten(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


async def census(args: argparse.Namespace) -> None:
    from hubbub.config import parse_config
    from hubbub.server import Listening, serve

    config = parse_config(HUBBUB_CONFIG)
    listening: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    server = asyncio.create_task(serve(config, listening.set_result, stop))
    port = (await listening).port
    warm = hold(port, 50)
    await wait_ready(warm)
    await asyncio.sleep(0.5)
    gc.collect()
    counts0, sizes0 = type_census()
    before = {id(o) for o in gc.get_objects()}
    snap0 = tracemalloc.take_snapshot()
    rss0 = rss_kib(os.getpid())
    measured = hold(port, args.connections)
    await wait_ready(measured)
    await asyncio.sleep(1.0)
    gc.collect()
    # snap0 holds one big list of traces: it is the census's own, not the server's.
    counts1, sizes1 = type_census(before, snap0.traces._traces)  # type: ignore[attr-defined]
    snap1 = tracemalloc.take_snapshot()
    rss1 = rss_kib(os.getpid())
    n = args.connections
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    snap0, snap1 = snap0.filter_traces(filters), snap1.filter_traces(filters)

    print(f"\n{n} idle subscribed connections (JWT, one of 100 channels each)")
    traced = sum(stat.size_diff for stat in snap1.compare_to(snap0, "filename"))
    print(
        f"RSS growth {(rss1 - rss0) / n:.2f} KiB/connection (inflated by tracemalloc's own "
        f"bookkeeping: bench/peers.py measures RSS without it); traced by tracemalloc "
        f"{traced / n / 1024:.2f} KiB/connection (Python heap incl. raw allocations); "
        f"GC-tracked objects {sum((sizes1 - sizes0).values()) / n / 1024:.2f} KiB/connection"
    )
    print("\nby type (GC-tracked objects that appeared), per connection:")
    print("| type | objects | bytes |")
    print("|---|---|---|")
    grown = sizes1 - sizes0
    for name, size in grown.most_common(args.top):
        print(f"| {name} | {(counts1[name] - counts0[name]) / n:.2f} | {size / n:.0f} |")
    print("\nby allocation file (tracemalloc), per connection:")
    print("| file | bytes | blocks |")
    print("|---|---|---|")
    for stat in snap1.compare_to(snap0, "filename")[: args.top]:
        frame = stat.traceback[0]
        print(
            f"| {shorten(frame.filename)} | {stat.size_diff / n:.0f} | {stat.count_diff / n:.2f} |"
        )
    print("\nby allocation line (tracemalloc), per connection:")
    print("| line | bytes | blocks |")
    print("|---|---|---|")
    for stat in snap1.compare_to(snap0, "lineno")[: args.top]:
        frame = stat.traceback[0]
        where = f"{shorten(frame.filename)}:{frame.lineno}"
        print(f"| {where} | {stat.size_diff / n:.0f} | {stat.count_diff / n:.2f} |")
    found = one_connection(before)
    total = sum(size for _, _, size in found)
    print("\none connection's own objects, walked from its Connection, RequestHandler, transport")
    print(f"and handler task: {len(found)} objects, {total / 1024:.2f} KiB (getsizeof)")
    by_type: Counter[str] = Counter()
    by_owner: Counter[str] = Counter()
    for path, kind, size in found:
        by_type[kind] += size
        owner = path.split(" > ")[-1] if " > " in path else path
        by_owner[f"{owner} -> {kind}"] += size
    print("| type | bytes |")
    print("|---|---|")
    for kind, size in by_type.most_common(args.top):
        print(f"| {kind} | {size} |")
    print("\n| owner -> type | bytes |")
    print("|---|---|")
    for key, size in by_owner.most_common(args.top):
        print(f"| {key} | {size} |")
    for process in (measured, warm):
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)
    stop.set()
    await server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    tracemalloc.start(1)
    import uvloop

    with tempfile.TemporaryDirectory():
        began = time.perf_counter()
        uvloop.run(census(args))
        print(f"\n({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
