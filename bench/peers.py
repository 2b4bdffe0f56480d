"""Hubbub next to its peers (NATS, Node ``ws``, Socket.IO 4, python-socketio), one command:

    .venv/bin/python bench/peers.py             # about 10 minutes; --quick for a short run

Installs what it needs first (``npm ci`` in ``bench/peers/``, ``pip install -r
bench/requirements.txt`` into this interpreter's environment), then, for each server in turn:
starts it pinned to CPU 0 (``taskset``), runs ``bench/peers_load.py`` pinned to CPU 1 and reads
the server's CPU time and RSS from ``/proc/<pid>``, so connecting subscribers (setup) is never
counted in a per-delivery figure. Rows:

* **burst**: 1,000 subscribers of one channel, one publisher (not subscribed), 300 publishes as
  fast as they are acknowledged (32 in flight): server CPU µs per delivery.
* **paced**: 20 publishes/s for 5 s to the same 1,000 (each delivery leaves alone, one write
  each): server CPU µs per delivery, and publish -> receive latency at the load generator.
* **idle RSS**: 5,000 subscribed connections (100 channels), server RSS growth per connection.
* **connects**: 1,000 cycles of connect with credentials + subscribe + clean close, 16 at a
  time: cycles per second of server CPU.
* **storm**: while the 1,000 get 20 msg/s, a second load process (niced) opens 10,000
  connections at once: seconds until all were welcomed, and the existing subscribers' p99.
* **100k idle** (Hubbub and Node ``ws``, the smallest peer): 100,000 subscribed connections
  from 127.0.0.2-.9, server RSS.

Each peer is the minimal equivalent of Hubbub's fan-out (``bench/baseline/ws_broadcast.mjs``,
``bench/peers/socketio_server.mjs``, ``bench/peers/python_socketio_server.py``, and
``nats-server`` with a generated config: private ports, a ``websocket`` block, token auth).
The machine's own NATS on 4222 is not touched. Ratios within one run are what count.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

from fanout import ServerSpec, pinned, running
from peers_load import JWT_KID, JWT_SECRET, NATS_TOKEN

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS_DIR = BENCH / "peers"
NATS_SERVER = "/usr/sbin/nats-server"

HUBBUB_CONFIG = f"""
[server]
host = "127.0.0.1"
port = 0
connect_attempts_per_ip = 0          # every connect comes from loopback
slow_consumer_bytes = 268435456      # the publish window bounds what can queue

[limits]
rate_per_second = 0
rate_burst = 0

[[apps]]
id = "bench"

[[apps.keys]]
id = "{JWT_KID}"
kind = "secret"
secret = "{JWT_SECRET}"
channel_patterns = ["**"]
# No "presence": no peer has it, and 1,000 joins would otherwise send ~500k deltas.
actions = ["publish", "subscribe"]
"""

NATS_CONFIG = """
listen: "127.0.0.1:{client_port}"
max_connections: 1000000
# timeout: seconds a client has to send CONNECT (default 2); the storm's niced clients can
# take longer than that to answer INFO while 10,000 handshakes queue up on their core.
authorization {{ token: "{token}", timeout: 30 }}
websocket {{
  host: "127.0.0.1"
  port: {ws_port}
  no_tls: true
}}
"""

LEAN_IMPLS = ("aiohttp", "websockets", "wsproto", "raw", "picows", "picows-small", "sniff")

GOALS = {
    "kib": 8.0,
    "paced_us": 10.0,
    "burst_us": 1.2,
    "connects": 3000.0,
    "storm_s": 10.0,
    "storm_p99_ms": 50.0,
    "100k_gib": 1.0,
}


@dataclass(frozen=True)
class Peer:
    spec: ServerSpec
    dialect: str
    url_path: str
    env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def before_tree(tmp: Path, ref: str) -> Path:
    """``src/`` of git ref ``ref`` extracted under ``tmp`` (the "before" of a change)."""
    target = tmp / "before"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", ref, "src"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def peers(tmp: Path, before: str = "") -> dict[str, Peer]:
    hubbub_config = tmp / "hubbub.toml"
    hubbub_config.write_text(HUBBUB_CONFIG, encoding="utf-8")
    nats_config = tmp / "nats.conf"
    nats_config.write_text(
        NATS_CONFIG.format(client_port=free_port(), ws_port=free_port(), token=NATS_TOKEN),
        encoding="utf-8",
    )
    jwt_env = {"BENCH_JWT_SECRET": JWT_SECRET}
    listening = re.compile(rb"listening on (\d+)")
    hubbub_command = [sys.executable, "-m", "hubbub", "serve", "--config", str(hubbub_config)]
    hubbub_ready = re.compile(rb"Hubbub listening on http://[^:]+:(\d+)")
    before_peer = (
        {
            # The same server from another commit's src/ (PYTHONPATH wins over the editable
            # install): the side-by-side "before".
            "hubbub-before": Peer(
                ServerSpec("hubbub-before", hubbub_command, hubbub_ready),
                "hubbub",
                "/v1",
                {"PYTHONPATH": str(before_tree(tmp, before))},
            )
        }
        if before
        else {}
    )
    return {
        "hubbub": Peer(ServerSpec("hubbub", hubbub_command, hubbub_ready), "hubbub", "/v1"),
        **before_peer,
        "nats": Peer(
            ServerSpec(
                "nats",
                [NATS_SERVER, "-c", str(nats_config)],
                re.compile(rb"Listening for websocket clients on ws://[^:]+:(\d+)"),
            ),
            "nats",
            "/",
        ),
        "node-ws": Peer(
            ServerSpec(
                "node-ws", ["node", str(BENCH / "baseline" / "ws_broadcast.mjs"), "0"], listening
            ),
            "hubbub",
            "/v1",
            jwt_env,
        ),
        "socketio": Peer(
            ServerSpec(
                "socketio", ["node", str(PEERS_DIR / "socketio_server.mjs"), "0"], listening
            ),
            "socketio",
            "/",
            jwt_env,
        ),
        "python-socketio": Peer(
            ServerSpec(
                "python-socketio",
                [sys.executable, str(PEERS_DIR / "python_socketio_server.py"), "0"],
                listening,
            ),
            "socketio",
            "/",
            jwt_env,
        ),
        **{
            # Candidate WebSocket layers for a lean /v1 (bench/lean/server.py), same fan-out.
            f"lean-{impl}": Peer(
                ServerSpec(
                    f"lean-{impl}",
                    [sys.executable, str(BENCH / "lean" / "server.py"), impl, "0"],
                    listening,
                ),
                "hubbub",
                "/v1",
            )
            for impl in LEAN_IMPLS
        },
    }


# -------------------------------------------------------------------------------------- setup


def setup(big: int) -> int:
    """Install the peers' packages (idempotent), raise the open-files limit and return how
    many connections the big run can hold."""
    if not (PEERS_DIR / "node_modules" / "socket.io").is_dir():
        print("setup: npm ci in bench/peers", file=sys.stderr, flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS_DIR, check=True)
    wanted = ("picows", "wsproto", "socketio", "engineio")
    if any(importlib.util.find_spec(name) is None for name in wanted):
        print("setup: pip install -r bench/requirements.txt", file=sys.stderr, flush=True)
        requirements = str(BENCH / "requirements.txt")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-r", requirements], check=True
        )
    if not Path(NATS_SERVER).exists():
        raise SystemExit(f"{NATS_SERVER} is missing: apt-get install nats-server")
    # Servers and load generators inherit this: 100k connections need 100k descriptors each.
    # Raising the hard limit needs CAP_SYS_RESOURCE; without it the hard limit is the ceiling.
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(nr_open, 1 << 20)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit < big + 1000:
        print(
            f"setup: open files are capped at {limit:,} per process (hard limit; no "
            f"CAP_SYS_RESOURCE to raise it): the big run is {limit - 1000:,} connections, "
            f"not {big:,}",
            file=sys.stderr,
            flush=True,
        )
        big = limit - 1000
    ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    print(
        f"setup: RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)}, "
        f"ip_local_port_range {ports.split()}, "
        f"somaxconn {Path('/proc/sys/net/core/somaxconn').read_text().strip()}",
        file=sys.stderr,
        flush=True,
    )
    return big


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -------------------------------------------------------------------------------------- runs


async def run_load(
    peer: Peer, extra: list[str], cpus: tuple[int, int], timeout_s: float
) -> dict[str, Any]:
    os.environ.update(peer.env)
    try:
        async with running(peer.spec, cpus[0]) as (pid, port):
            command = [
                sys.executable,
                str(BENCH / "peers_load.py"),
                f"--dialect={peer.dialect}",
                f"--url=ws://127.0.0.1:{port}{peer.url_path}",
                f"--server-pid={pid}",
                *extra,
            ]
            load = await asyncio.create_subprocess_exec(
                *pinned(command, cpus[1]), stdout=asyncio.subprocess.PIPE, cwd=ROOT
            )
            try:
                stdout, _ = await asyncio.wait_for(load.communicate(), timeout_s)
            finally:
                if load.returncode is None:
                    load.kill()
                    await load.wait()
            if load.returncode != 0:
                raise RuntimeError(f"load generator failed against {peer.spec.name}")
            result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
            return result
    finally:
        for name in peer.env:
            os.environ.pop(name, None)


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def render(
    results: dict[str, dict[str, Any]], big: dict[str, dict[str, Any]], big_count: int
) -> str:
    names = [*results, *(name for name in big if name not in results)]
    results = {name: results.get(name, {"_name": name}) for name in names}
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, cell: Any) -> None:
        cells = []
        for name in names:
            try:
                cells.append(cell(results[name]))
            except (KeyError, TypeError):
                cells.append("-")
        rows.append((label, cells))

    row("burst fan-out, server CPU µs/delivery", lambda r: fmt(r["burst"]["us_per_delivery"], 2))
    row(
        "  burst loss",
        lambda r: str(r["burst"]["loss"]) + (" (timed out)" if r["burst"]["timed_out"] else ""),
    )
    row(
        "paced fan-out 20 msg/s, server CPU µs/delivery",
        lambda r: fmt(r["paced"]["us_per_delivery"], 2),
    )
    row(
        "  paced p50 / p99 ms",
        lambda r: f"{fmt(r['paced']['p50_ms'])} / {fmt(r['paced']['p99_ms'])}",
    )
    row(
        "  paced loss",
        lambda r: str(r["paced"]["loss"]) + (" (timed out)" if r["paced"]["timed_out"] else ""),
    )
    row("RSS per idle subscribed connection, KiB", lambda r: fmt(r["rss"]["kib_per_connection"]))
    row(
        "connect + subscribe + close per server CPU-s",
        lambda r: fmt(r["churn"]["per_cpu_second"], 0),
    )
    row(
        "storm: all welcomed after, s",
        lambda r: (
            fmt(r["storm"]["all_welcomed_s"], 2)
            + ("" if r["storm"]["failures"] == 0 else f" ({r['storm']['failures']} failed)")
        ),
    )
    row("  storm: existing subscribers' p99 ms", lambda r: fmt(r["storm"]["existing_p99_ms"]))
    row(
        f"{big_count:,} idle: server RSS MiB",
        lambda r: "-" if r["_name"] not in big else fmt(big[r["_name"]]["rss_after_kib"] / 1024, 0),
    )
    row(
        f"  {big_count:,} idle: KiB/connection",
        lambda r: "-" if r["_name"] not in big else fmt(big[r["_name"]]["kib_per_connection"]),
    )
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(n), *(len(cells[i]) for _, cells in rows)) for i, n in enumerate(names)]
    out = [
        "| " + " | ".join([" " * label_width, *map(str.rjust, names, widths)]) + " |",
        "|" + "|".join("-" * (w + 2) for w in [label_width, *widths]) + "|",
    ]
    for label, cells in rows:
        padded = [c.rjust(w) for c, w in zip(cells, widths, strict=False)]
        out.append("| " + " | ".join([label.ljust(label_width), *padded]) + " |")
    return "\n".join(out)


def goal_lines(results: dict[str, dict[str, Any]], big: dict[str, dict[str, Any]]) -> list[str]:
    hub = results.get("hubbub")
    if not hub:
        return []
    lines = [
        "",
        "Hubbub against the goals (issue 16); value / goal, or goal / value where lower wins:",
    ]

    def add(label: str, value: float | None, goal: float, lower_is_better: bool) -> None:
        if value is None:
            lines.append(f"* {label}: not measured")
            return
        ok = value <= goal if lower_is_better else value >= goal
        ratio = value / goal
        verdict = "met" if ok else "NOT met"
        lines.append(f"* {label}: {value:,.2f} (goal {goal:,g}, {ratio:.2f}x of it) {verdict}")

    def get(*path: str) -> float | None:
        node: Any = hub
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return float(node)

    add("RSS KiB per idle connection (<= 8)", get("rss", "kib_per_connection"), GOALS["kib"], True)
    if "hubbub" in big:
        report = big["hubbub"]
        gib = report["rss_after_kib"] / (1 << 20)
        opened = report["connections"]
        add(f"idle run, server GiB ({opened:,} open)", gib, GOALS["100k_gib"], True)
        if opened < 100_000:
            projected = report["rss_before_kib"] + 100_000 * report["kib_per_connection"]
            add(
                "100k idle projected from that run's KiB/connection, GiB (< 1)",
                projected / (1 << 20),
                GOALS["100k_gib"],
                True,
            )
    add("paced µs/delivery (<= 10)", get("paced", "us_per_delivery"), GOALS["paced_us"], True)
    add("burst µs/delivery (<= 1.2)", get("burst", "us_per_delivery"), GOALS["burst_us"], True)
    add("connects per CPU-s (>= 3,000)", get("churn", "per_cpu_second"), GOALS["connects"], False)
    add(
        "storm: all 10k welcomed, s (<= 10)", get("storm", "all_welcomed_s"), GOALS["storm_s"], True
    )
    add(
        "storm: existing p99 ms (< 50)",
        get("storm", "existing_p99_ms"),
        GOALS["storm_p99_ms"],
        True,
    )
    others = {n: r for n, r in results.items() if n != "hubbub"}
    for key, label, lower in (
        (("paced", "us_per_delivery"), "paced µs/delivery", True),
        (("burst", "us_per_delivery"), "burst µs/delivery", True),
        (("rss", "kib_per_connection"), "idle KiB/connection", True),
        (("churn", "per_cpu_second"), "connects per CPU-s", False),
    ):
        mine = get(*key)
        values = {}
        for name, result in others.items():
            with contextlib.suppress(KeyError, TypeError):
                values[name] = float(result[key[0]][key[1]])
        if mine is None or not values:
            continue
        best = (min if lower else max)(values, key=lambda n: values[n])
        factor = values[best] / mine if lower else mine / values[best]
        lines.append(
            f"* {label}: best peer {best} {values[best]:,.2f}; Hubbub is {factor:.2f}x as good"
        )
    return lines


async def main(args: argparse.Namespace) -> int:
    args.big = setup(args.big)
    cpus = (0, 1)
    started_load = load_average()
    began = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    big: dict[str, dict[str, Any]] = {}
    suite_args = [
        f"--rows={args.rows}",
        f"--subscribers={args.subscribers}",
        f"--messages={args.messages}",
        f"--paced-s={args.paced_seconds}",
        f"--idle={args.idle}",
        f"--churn={args.churn}",
        f"--storm={args.storm}",
    ]
    with tempfile.TemporaryDirectory(prefix="hubbub-peers-") as tmp:
        table = peers(Path(tmp), args.before)
        for name in args.servers.split(","):
            print(f"== {name} (load average {load_average()})", file=sys.stderr, flush=True)
            try:
                results[name] = await run_load(table[name], suite_args, cpus, args.timeout)
            except Exception as exc:  # one peer failing must not lose the others' rows
                print(f"{name} failed: {exc!r}", file=sys.stderr, flush=True)
                results[name] = {}
            results[name]["_name"] = name
        sources = ",".join(f"127.0.0.{n}" for n in range(2, 2 + args.sources))
        for name in [n for n in args.big_servers.split(",") if n]:
            print(f"== {name}: {args.big:,} idle connections", file=sys.stderr, flush=True)
            extra = ["--scenario=idle", f"--count={args.big}", f"--sources={sources}"]
            try:
                big[name] = await run_load(table[name], extra, cpus, args.timeout * 4)
            except Exception as exc:
                print(f"{name} 100k failed: {exc!r}", file=sys.stderr, flush=True)
    print()
    print(
        f"bench/peers.py: server on CPU {cpus[0]}, load generator on CPU {cpus[1]}; "
        f"{args.subscribers} subscribers, {args.messages} burst messages, 20 msg/s paced for "
        f"{args.paced_seconds:g} s, {args.idle} idle, {args.churn} connect cycles, storm "
        f"{args.storm}, big run {args.big:,}; load average {started_load} -> {load_average()}; "
        f"{time.perf_counter() - began:.0f} s"
    )
    print()
    print(render(results, big, args.big))
    for line in goal_lines(results, big):
        print(line)
    for name, report in big.items():
        print(
            f"\n{name} {args.big:,} idle: {report['connections']:,} open "
            f"({report['failures']} failed, {report['still_open']:,} still open after "
            f"{5:g} s), connected in {report['connect_s']:.0f} s using "
            f"{report['connect_cpu_s']:.1f} s of server CPU"
            + f"; listen queue overflows meanwhile (machine-wide): {report['listen_overflows']}"
            + (f"; failures: {report['failure_kinds']}" if report["failures"] else "")
        )
    if args.json:
        print(json.dumps({"suite": results, "big": big}, indent=1))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="hubbub,nats,node-ws,socketio,python-socketio")
    parser.add_argument("--rows", default="rss,burst,paced,churn,storm")
    parser.add_argument("--big-servers", default="hubbub,node-ws", help="for the 100k run")
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--sources", type=int, default=8, help="loopback source addresses")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--churn", type=int, default=1000)
    parser.add_argument("--storm", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=900.0, help="per server, seconds")
    parser.add_argument("--quick", action="store_true", help="small counts, no 100k run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--before", default="", help="a git ref: adds server hubbub-before, its src/ (compare)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.subscribers, args.messages, args.paced_seconds = 200, 100, 2.0
        args.idle, args.churn, args.storm, args.big_servers = 1000, 200, 1000, ""
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
