"""What the hostile-load benches (issue 11) share: a restartable ``hubbub serve`` subprocess
whose log is kept, /proc readings of it, a raw ``/v1`` client and percentiles.

Not a bench itself: ``fuzz_live.py``, ``soak.py``, ``faults.py`` and ``storm.py`` import it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.redis import free_port  # noqa: E402
from tests.support.server import DEMO_APP_TOML  # noqa: E402

DEMO_KEY = "pk_live_demo"

DEMO_APP = DEMO_APP_TOML  # the suite's demo app: one definition for tests and benches


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Node:
    """One ``hubbub serve`` on a fixed port with its whole log in ``log_path``."""

    name: str
    config_path: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout_s: float = 60) -> None:
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hubbub",
            "serve",
            "--config",
            str(self.config_path),
            "--port",
            str(self.port),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.config_path.parent,
            env={**os.environ, **self.extra_env},
        )
        log.close()
        started = time.monotonic()
        while b"Hubbub listening on" not in self.log_path.read_bytes()[-4096:]:
            if self.process.returncode is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"{self.name} did not listen within {timeout_s} s")
            await asyncio.sleep(0.05)  # a subprocess start-up has no event to await

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    async def metrics(self, session: aiohttp.ClientSession) -> dict[str, float]:
        """The unlabelled samples of ``/metrics`` by name."""
        async with session.get(f"{self.http}/metrics") as response:
            text = await response.text()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values


async def open_v1(
    session: aiohttp.ClientSession, url: str, key: str = DEMO_KEY, **kwargs: Any
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """A raw ``/v1`` socket and its welcome frame."""
    ws = await session.ws_connect(f"{url}/v1?key={key}", autoping=True, **kwargs)
    welcome = json.loads((await ws.receive(timeout=15)).data)
    if welcome.get("type") != "welcome":
        await ws.close()
        raise RuntimeError(f"no welcome: {welcome}")
    return ws, welcome


async def subscribe(ws: aiohttp.ClientWebSocketResponse, channel: str, request_id: str) -> None:
    await ws.send_str(
        json.dumps({"type": "subscribe", "channel": channel, "requestId": request_id})
    )
    async with asyncio.timeout(15):
        while True:
            frame = json.loads((await ws.receive()).data)
            if frame.get("requestId") == request_id:
                if frame["type"] != "ack":
                    raise RuntimeError(f"subscribe refused: {frame}")
                return


def abort(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Drop the TCP connection without a close frame (a client vanishing)."""
    connection = ws._conn
    if connection is not None and connection.transport is not None:
        connection.transport.abort()


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
