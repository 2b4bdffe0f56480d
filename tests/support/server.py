"""Run a real ``hubbub serve`` process on a free loopback port for integration tests.

    async with running_server(CONFIG_TOML) as server:
        server.ws_url      # "ws://127.0.0.1:PORT"  (what SDKs take as their url option)
        server.http_url    # "http://127.0.0.1:PORT"

The process is started with ``--port 0``; the port is read from its "Hubbub listening on" line.
Everything is bounded: start-up and shutdown wait with timeouts, never with sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LISTENING = re.compile(rb"Hubbub listening on http://(?P<host>[^:]+):(?P<port>\d+)")

# Set to 1 to give every channel of every app history (spec 16.1): the official SDKs' suites
# must pass unchanged when every frame carries offsets (see the Makefile's test target).
HISTORY_EVERYWHERE_ENV = "HUBBUB_TEST_HISTORY_EVERYWHERE"
_HISTORY_EVERYWHERE = """
[[apps.channels]]
pattern = "**"
history_size = 100
history_ttl_s = 600
"""


def history_everywhere() -> bool:
    return os.environ.get(HISTORY_EVERYWHERE_ENV) == "1"


def without_history_fields(body: dict[str, Any]) -> dict[str, Any]:
    """A REST publish answer without the offset/epoch a history channel adds (spec 16.1)."""
    return {k: v for k, v in body.items() if k not in ("offset", "epoch")}


def with_history_everywhere(config_toml: str) -> str:
    """``config_toml`` with history on every channel of every app, when the environment asks
    for it (``HUBBUB_TEST_HISTORY_EVERYWHERE=1``); unchanged otherwise."""
    if not history_everywhere() or "[[apps]]" not in config_toml:
        return config_toml
    head, *apps = config_toml.split("[[apps]]")
    return head + "".join(f"[[apps]]{app.rstrip()}\n{_HISTORY_EVERYWHERE}\n" for app in apps)


DEMO_APP_TOML = """
[[apps]]
id = "demo"

[[apps.keys]]
id = "pk_live_demo"
kind = "publishable"
channel_patterns = ["**"]
actions = ["publish", "subscribe", "presence", "send"]

[[apps.keys]]
id = "sk_id_demo"
kind = "secret"
secret = "sk_secret_demo"
channel_patterns = ["**"]
actions = ["publish", "subscribe", "presence", "send"]
"""


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    host: str
    port: int
    output: list[bytes] = field(default_factory=list)
    new_output: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        return b"".join(self.output).decode(errors="replace")

    async def wait_for_output(self, text: str, timeout_s: float = 10.0) -> str:
        """The first output line containing ``text``, once the server has written it."""
        async with asyncio.timeout(timeout_s):
            seen = 0
            while True:
                for line in self.output[seen:]:
                    if text.encode() in line:
                        return line.decode(errors="replace")
                seen = len(self.output)
                await self.new_output.wait()
                self.new_output.clear()

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode


async def _pump(stream: asyncio.StreamReader, server: ServerProcess) -> None:
    while line := await stream.readline():
        server.output.append(line)
        server.new_output.set()


@contextlib.asynccontextmanager
async def running_server(
    config_toml: str | None = DEMO_APP_TOML,
    *,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    start_timeout_s: float = 20.0,
    host: str | None = "127.0.0.1",
    global_args: tuple[str, ...] = (),
) -> AsyncIterator[ServerProcess]:
    """Start ``hubbub serve`` (with ``config_toml`` written to a temp file, or demo mode).

    ``host=None`` leaves the address to the file and the environment; ``global_args`` go
    before ``serve`` (``--log-format json``)."""
    with tempfile.TemporaryDirectory(prefix="hubbub-test-") as tmp:
        args = [sys.executable, "-m", "hubbub", *global_args, "serve", "--port", "0"]
        if host is not None:
            args += ["--host", host]
        if config_toml is not None:
            path = Path(tmp) / "hubbub.toml"
            path.write_text(with_history_everywhere(config_toml), encoding="utf-8")
            args += ["--config", str(path)]
        args += list(extra_args)
        process = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=tmp,
        )
        assert process.stdout is not None
        output: list[bytes] = []
        try:
            async with asyncio.timeout(start_timeout_s):
                while True:
                    line = await process.stdout.readline()
                    if not line:
                        raise RuntimeError(
                            "hubbub serve exited before listening:\n"
                            + b"".join(output).decode(errors="replace")
                        )
                    output.append(line)
                    found = LISTENING.search(line)
                    if found:
                        break
        except BaseException:
            process.kill()
            await process.wait()
            raise
        server = ServerProcess(
            process, found.group("host").decode(), int(found.group("port")), output
        )
        pump = asyncio.create_task(_pump(process.stdout, server))
        try:
            yield server
        finally:
            await server.stop()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
