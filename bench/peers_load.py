"""Load generator for ``bench/peers.py``: one process, raw WebSocket clients on uvloop protocols.

Run by the orchestrator (pinned to CPU 1), which reads the one JSON line it prints on stdout;
the clients and dialects are in ``bench/peers_client.py``:

    python bench/peers_load.py --dialect hubbub --url ws://127.0.0.1:PORT/v1 \\
        --server-pid PID --scenario suite

The clients speak just enough RFC 6455 (masked client frames, unmasked server frames, ping,
close) and of each peer's own protocol (a *dialect*) to connect with credentials, subscribe,
publish and count deliveries. Counting scans each read's bytes for frame headers and the
dialect's delivery prefix, without a task or an allocation per delivery (~1 µs of CPU each),
so the load generator is not what limits a server (docs/benchmarks.md).

Dialects, all with the same scenario: subscribers of one channel, a publisher that is not
subscribed, every publication delivered to every subscriber.

* ``hubbub`` and ``node-ws`` (``bench/baseline/ws_broadcast.mjs``): the realtime protocol,
  ``?token=<JWT>`` on connect, ``welcome``, ``subscribe`` / ``publish`` with ``requestId`` ->
  ``ack``, deliveries are ``{"type":"message"...}`` frames.
* ``socketio`` (Socket.IO 4 on Node, and python-socketio): Engine.IO 4 over a WebSocket only,
  the JWT in the namespace CONNECT packet's auth payload, events ``subscribe`` / ``publish``
  with acknowledgements, deliveries are ``42["message",...]`` packets, ping ``2`` -> pong ``3``.
* ``nats``: the NATS client protocol over NATS' WebSocket listener, ``auth_token`` in CONNECT
  (NATS' own JWT auth needs an operator setup with nkeys; a token is its shared-secret
  equivalent), ``SUB``, ``PUB``, a ``PING`` after each command whose ``PONG`` is the ack,
  deliveries are ``MSG`` lines (several can share one WebSocket frame, so this dialect parses
  the byte stream).

Scenarios (``--scenario``): ``suite`` runs idle RSS, burst + paced fan-out, connect churn and
the connect storm against one server; ``idle`` opens ``--count`` subscribed connections from
several loopback source addresses and reports the server's RSS; ``storm-clients`` is the storm's
second process (started by ``suite`` itself, so the existing subscribers are read by a process
that is not busy with 10,000 handshakes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import uvloop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers_client import (
    DIALECTS,
    JWT_KID,
    JWT_SECRET,
    NATS_TOKEN,
    Client,
    Dialect,
    Tally,
    Target,
    many,
)

__all__ = ["JWT_KID", "JWT_SECRET", "NATS_TOKEN"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --------------------------------------------------------------------------------- measuring


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_KIB


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all
    sockets on the machine, so other people's tests can add to it)."""
    with open("/proc/net/netstat") as netstat:
        lines = netstat.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table["ListenOverflows"])
    return 0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000.0


def log(text: str) -> None:
    print(f"[load] {text}", file=sys.stderr, flush=True)


async def quiesce(pid: int, limit_s: float = 120.0) -> None:
    """Wait until the server is idle (under 2% of a core over 0.5 s): a phase must not be
    charged for the previous one's leftovers, such as 10,000 disconnects after the storm."""
    deadline = time.perf_counter() + limit_s
    before = cpu_seconds(pid)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.5)
        now = cpu_seconds(pid)
        if now - before <= 0.01:
            return
        before = now
    log(f"server still busy after {limit_s:.0f} s; measuring anyway")


async def settle_rss(pid: int, seconds: float) -> int:
    """RSS once it stops moving (allocators and GCs settle after a wave of connects)."""
    await asyncio.sleep(seconds)
    return rss_kib(pid)


async def measure_idle_rss(
    target: Target, pid: int, count: int, parallel: int, timeout_s: float
) -> dict[str, Any]:
    tally = Tally()
    # One warm connection first, so lazily created server state is not charged to the count.
    warm = await target.subscriber(tally, "idle-0", 0, timeout_s)
    await quiesce(pid)
    before = await settle_rss(pid, 1.0)
    began = time.perf_counter()
    cpu_before = cpu_seconds(pid)

    async def one(i: int) -> Client:
        return await target.subscriber(tally, f"idle-{i % 100}", i, timeout_s)

    clients = await many(count, parallel, one)
    connect_s = time.perf_counter() - began
    connect_cpu = cpu_seconds(pid) - cpu_before
    after = await settle_rss(pid, 2.0)
    for client in [*clients, warm]:
        client.abort()
    await asyncio.sleep(1.0)
    return {
        "connections": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": (after - before) / count,
        "connect_s": connect_s,
        "connect_cpu_s": connect_cpu,
    }


async def run_burst(
    publisher: Client,
    subscribers: list[Client],
    tally: Tally,
    dialect: Dialect,
    pid: int,
    messages: int,
    window: int,
    timeout_s: float,
) -> dict[str, Any]:
    for sub in subscribers:
        sub.messages = 0
    tally.reset(messages * len(subscribers))
    frames = [dialect.publish("bench", seq, 0.0) for seq in range(messages)]
    state = {"sent": min(window, messages), "acked": 0}
    all_acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_event(kind: str, payload: bytes) -> None:
        if kind != "ack":
            if not all_acked.done():
                all_acked.set_exception(RuntimeError(f"publish failed: {kind} {payload[:200]!r}"))
            return
        state["acked"] += 1
        if state["sent"] < messages:
            publisher.send(frames[state["sent"]])
            state["sent"] += 1
        elif state["acked"] == messages and not all_acked.done():
            all_acked.set_result(None)

    publisher.listener = on_event
    await quiesce(pid)
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    publisher.send(b"".join(frames[: state["sent"]]))
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            await all_acked
            assert tally.done is not None
            await tally.done.wait()
    except TimeoutError:
        timed_out = True
    finally:
        publisher.listener = None
    elapsed = (tally.last_at or time.perf_counter()) - started
    cpu = cpu_seconds(pid) - cpu_before
    delivered = sum(sub.messages for sub in subscribers)
    return {
        "messages": messages,
        "deliveries": delivered,
        "loss": messages * len(subscribers) - delivered,
        "elapsed_s": elapsed,
        "server_cpu_s": cpu,
        "us_per_delivery": cpu / max(1, delivered) * 1e6,
        "deliveries_per_s": delivered / elapsed if elapsed > 0 else 0.0,
        "timed_out": timed_out,
    }


async def run_paced(
    publisher: Client,
    subscribers: list[Client],
    tally: Tally,
    dialect: Dialect,
    pid: int,
    rate: float,
    seconds: float,
    timeout_s: float,
) -> dict[str, Any]:
    count = max(1, int(rate * seconds))
    tally.reset(count * len(subscribers), latencies=True)
    publisher.listener = lambda kind, payload: None
    await quiesce(pid)
    log("paced phase starts")
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    timed_out = False
    try:
        for seq in range(count):
            delay = started + seq / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            publisher.send(dialect.publish("bench", seq, time.perf_counter()))
        async with asyncio.timeout(timeout_s):
            assert tally.done is not None
            await tally.done.wait()
    except TimeoutError:
        timed_out = True
    finally:
        publisher.listener = None
    cpu = cpu_seconds(pid) - cpu_before
    latencies = tally.latencies or []
    tally.latencies = None
    delivered = len(latencies)  # every paced delivery carries its send time
    return {
        "messages": count,
        "deliveries": delivered,
        "loss": count * len(subscribers) - delivered,
        "server_cpu_s": cpu,
        "us_per_delivery": cpu / max(1, delivered) * 1e6,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "timed_out": timed_out,
    }


async def run_churn(
    target: Target, pid: int, count: int, parallel: int, timeout_s: float
) -> dict[str, Any]:
    """Connect (with credentials), subscribe, close cleanly; server CPU per cycle."""
    tally = Tally()
    failures = 0

    async def cycle(i: int) -> None:
        nonlocal failures
        try:
            client = await target.subscriber(tally, f"churn-{i % 50}", i, timeout_s)
            await client.close(timeout_s)
        except (OSError, TimeoutError, ConnectionError):
            failures += 1

    await quiesce(pid)
    cpu_before = cpu_seconds(pid)
    began = time.perf_counter()
    await many(count, parallel, cycle)
    elapsed = time.perf_counter() - began
    await asyncio.sleep(0.3)  # the server's part of the last closes
    cpu = cpu_seconds(pid) - cpu_before
    done = count - failures
    return {
        "cycles": count,
        "failures": failures,
        "elapsed_s": elapsed,
        "server_cpu_s": cpu,
        "per_cpu_second": done / cpu if cpu > 0 else float("inf"),
        "per_second": done / elapsed if elapsed > 0 else 0.0,
    }


async def run_storm(
    args: argparse.Namespace,
    publisher: Client,
    subscribers: list[Client],
    tally: Tally,
    dialect: Dialect,
    pid: int,
) -> dict[str, Any]:
    """Existing subscribers get paced messages while another process connects N at once."""
    command = [
        sys.executable,
        __file__,
        "--scenario=storm-clients",
        f"--dialect={args.dialect}",
        f"--url={args.url}",
        f"--server-pid={pid}",
        f"--count={args.storm}",
        f"--timeout={args.storm_timeout}",
    ]
    if args.sources:
        command.append(f"--sources={args.sources}")
    # The storm's clients run niced, so the existing subscribers' reads (this process) come
    # first on the shared core and their latency is the server's, not the load generator's.
    storm = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=lambda: os.nice(10)
    )
    assert storm.stdout is not None and storm.stdin is not None
    loop = asyncio.get_running_loop()
    ready = await loop.run_in_executor(None, storm.stdout.readline)
    if ready.strip() != b"ready":
        raise RuntimeError(f"storm process failed to start: {ready!r}")
    tally.reset(1 << 62, latencies=True)
    publisher.listener = lambda kind, payload: None
    stop = asyncio.Event()

    async def pace() -> int:
        seq, started = 0, time.perf_counter()
        while not stop.is_set():
            delay = started + seq / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            publisher.send(dialect.publish("bench", 100_000 + seq, time.perf_counter()))
            seq += 1
        return seq

    await quiesce(pid)
    pacer = asyncio.create_task(pace())
    await asyncio.sleep(1.0)  # paced traffic before the storm
    cpu_before = cpu_seconds(pid)
    storm.stdin.write(b"go\n")
    storm.stdin.flush()
    line = await loop.run_in_executor(None, storm.stdout.readline)
    report: dict[str, Any] = json.loads(line)
    cpu = cpu_seconds(pid) - cpu_before
    await asyncio.sleep(0.5)
    stop.set()
    sent = await pacer
    await asyncio.sleep(0.5)
    latencies = tally.latencies or []
    tally.latencies = None
    storm.stdin.write(b"close\n")
    storm.stdin.flush()
    await loop.run_in_executor(None, storm.wait)
    publisher.listener = None
    report.update(
        {
            "server_cpu_s": cpu,
            "existing_p50_ms": percentile(latencies, 0.50),
            "existing_p99_ms": percentile(latencies, 0.99),
            "existing_max_ms": percentile(latencies, 1.0),
            "existing_deliveries": len(latencies),
            "existing_expected": sent * len(subscribers),
        }
    )
    return report


async def storm_clients(target: Target, count: int, timeout_s: float) -> None:
    """The storm's own process: on "go", open ``count`` connections at once."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    await reader.readline()
    tally = Tally()
    overflows = listen_overflows()
    began = time.perf_counter()
    welcomed_at: list[float] = []
    failures: list[str] = []
    clients: list[Client] = []

    async def one() -> None:
        try:
            clients.append(await target.connect(tally, timeout_s))
            welcomed_at.append(time.perf_counter() - began)
        except (OSError, TimeoutError, ConnectionError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:100])

    await asyncio.gather(*(one() for _ in range(count)))
    report = {
        "clients": count,
        "welcomed": len(welcomed_at),
        "failures": len(failures),
        "failure_kinds": sorted(set(failures))[:5],
        "listen_overflows": listen_overflows() - overflows,
        "all_welcomed_s": max(welcomed_at) if welcomed_at else float("nan"),
        "p50_welcome_s": percentile(welcomed_at, 0.5) / 1000.0,
        "storm_process_cpu_s": time.process_time(),
    }
    print(json.dumps(report), flush=True)
    await reader.readline()
    for client in clients:
        client.abort()


async def suite(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    pid, timeout_s = args.server_pid, args.timeout
    results: dict[str, Any] = {}
    rows = set(args.rows.split(","))
    if "rss" in rows:
        log(f"idle RSS: {args.idle} connections")
        results["rss"] = await measure_idle_rss(target, pid, args.idle, 64, timeout_s)
        log(f"  {results['rss']['kib_per_connection']:.1f} KiB/connection")
    # Connects first, on a server that has seen no storm yet (moving them here did not change
    # Hubbub's figure, which follows the machine's load instead: docs/benchmarks.md).
    if "churn" in rows:
        log(f"churn: {args.churn} connect + subscribe + close")
        results["churn"] = await run_churn(target, pid, args.churn, args.churn_parallel, timeout_s)
        log(f"  {results['churn']['per_cpu_second']:.0f} per server CPU-second")
    tally = Tally()
    if rows & {"burst", "paced", "storm"}:
        began = time.perf_counter()

        async def one(i: int) -> Client:
            return await target.subscriber(tally, "bench", i, timeout_s)

        subscribers = await many(args.subscribers, 64, one)
        publisher = await target.connect(tally, timeout_s)
        log(f"{len(subscribers)} subscribers in {time.perf_counter() - began:.1f} s")
        dialect = target.dialect
        phase_s = args.phase_timeout
        await run_burst(publisher, subscribers, tally, dialect, pid, 50, args.window, phase_s)
        log("warm-up done")
        await asyncio.sleep(args.settle)  # bench/callgrind_paced.py starts counting meanwhile
        if "burst" in rows:
            results["burst"] = await run_burst(
                publisher, subscribers, tally, dialect, pid, args.messages, args.window, phase_s
            )
            log(f"  burst {results['burst']['us_per_delivery']:.2f} µs/delivery")
        if "paced" in rows:
            results["paced"] = await run_paced(
                publisher, subscribers, tally, dialect, pid, args.rate, args.paced_s, phase_s
            )
            log(f"  paced {results['paced']['us_per_delivery']:.2f} µs/delivery")
        if "storm" in rows:
            log(f"storm: {args.storm} clients at once")
            results["storm"] = await run_storm(args, publisher, subscribers, tally, dialect, pid)
            log(f"  storm {results['storm']}")
        for client in [*subscribers, publisher]:
            client.abort()
        await asyncio.sleep(1.0)
    return results


async def idle(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """Many idle subscribed connections from several source addresses; the server's RSS."""
    pid = args.server_pid
    tally = Tally()
    before = await settle_rss(pid, 0.5)
    overflows = listen_overflows()
    began = time.perf_counter()
    cpu_before = cpu_seconds(pid)
    clients: list[Client] = []
    failures: list[str] = []

    async def one(i: int) -> None:
        try:
            clients.append(await target.subscriber(tally, f"idle-{i % 1000}", i, args.timeout))
        except (OSError, TimeoutError, ConnectionError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:120])
        if (i + 1) % 10_000 == 0:
            log(f"  {i + 1} attempted, {len(clients)} open, RSS {rss_kib(pid) / 1024:.0f} MiB")

    await many(args.count, 256, one)
    connect_s = time.perf_counter() - began
    cpu = cpu_seconds(pid) - cpu_before
    after = await settle_rss(pid, 3.0)
    # Still open and answering a minute later? (keepalives run in the meantime)
    await asyncio.sleep(args.hold)
    still_open = sum(1 for c in clients if c.transport is not None)
    held = rss_kib(pid)
    for client in clients:
        client.abort()
    return {
        "connections": len(clients),
        "failures": len(failures),
        "failure_kinds": sorted(set(failures))[:5],
        "listen_overflows": listen_overflows() - overflows,
        "connect_s": connect_s,
        "connect_cpu_s": cpu,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_held_kib": held,
        "still_open": still_open,
        "kib_per_connection": (after - before) / max(1, len(clients)),
    }


async def hold(args: argparse.Namespace, target: Target) -> None:
    """Open ``--count`` subscribed connections, say "ready", keep them until stdin closes
    (bench/census.py measures the server meanwhile)."""
    tally = Tally()

    async def one(i: int) -> Client:
        return await target.subscriber(tally, f"idle-{i % 100}", i, args.timeout)

    clients = await many(args.count, 64, one)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for client in clients:
        client.abort()


async def main(args: argparse.Namespace) -> None:
    dialect = DIALECTS[args.dialect]
    sources = [s for s in args.sources.split(",") if s] if args.sources else []
    target = Target(dialect, args.url, sources)
    if args.scenario == "storm-clients":
        await storm_clients(target, args.count, args.timeout)
        return
    if args.scenario == "hold":
        await hold(args, target)
        return
    outcome = await (suite(args, target) if args.scenario == "suite" else idle(args, target))
    outcome["load_cpu_s"] = time.process_time()
    print(json.dumps(outcome), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialect", choices=sorted(DIALECTS), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument(
        "--scenario", choices=["suite", "idle", "storm-clients", "hold"], default="suite"
    )
    parser.add_argument("--rows", default="rss,burst,paced,churn,storm")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--paced-s", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=5000, help="connections for idle RSS")
    parser.add_argument("--churn", type=int, default=1000)
    parser.add_argument("--churn-parallel", type=int, default=16)
    parser.add_argument("--storm", type=int, default=10_000)
    parser.add_argument("--storm-timeout", type=float, default=60.0)
    parser.add_argument("--count", type=int, default=100_000, help="idle / storm-clients")
    parser.add_argument("--hold", type=float, default=5.0, help="idle: seconds held open")
    parser.add_argument("--sources", default="", help="source addresses, comma-separated")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--phase-timeout", type=float, default=300.0, help="burst, paced")
    parser.add_argument("--settle", type=float, default=0.0, help="pause after the warm-up")
    return parser.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
