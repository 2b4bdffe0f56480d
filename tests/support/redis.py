"""Redis for tests: the machine's shared server with a unique key prefix, or private servers.

Private servers (``private_redis``, ``redis_cluster``) run on free loopback ports in a temp
directory, so a test may stop and restart them; the shared 127.0.0.1:6379 is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

SHARED_URL = "redis://127.0.0.1:6379/0"


def unique_prefix() -> str:
    return f"hubbub-test-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def redis_cli(port: int, *args: str, timeout_s: float = 10.0) -> str:
    process = await asyncio.create_subprocess_exec(
        "redis-cli",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    return out.decode()


async def delete_prefix(port: int, prefix: str) -> None:
    """Remove every key a test wrote under its prefix."""
    keys = (await redis_cli(port, "--scan", "--pattern", f"{prefix}:*")).split()
    for start in range(0, len(keys), 200):
        await redis_cli(port, "DEL", *keys[start : start + 200])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


@dataclass
class PrivateRedis:
    port: int
    directory: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, *extra: str) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            *extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(10):
            while "PONG" not in await redis_cli(self.port, "PING"):
                await asyncio.sleep(0.05)  # polling a process start-up, bounded above

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.process = None


@contextlib.asynccontextmanager
async def private_redis() -> AsyncIterator[PrivateRedis]:
    directory = Path(tempfile.mkdtemp(prefix="hubbub-redis-"))
    server = PrivateRedis(free_port(), directory)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def redis_cluster(masters: int = 3) -> AsyncIterator[list[PrivateRedis]]:
    """A Redis Cluster of ``masters`` primaries (no replicas) on free loopback ports."""
    directory = Path(tempfile.mkdtemp(prefix="hubbub-redis-cluster-"))
    servers = []
    for _ in range(masters):
        port = free_cluster_port()
        node_dir = directory / str(port)
        node_dir.mkdir()
        servers.append(PrivateRedis(port, node_dir))
    try:
        for server in servers:
            await server.start("--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        created = await redis_cli(
            servers[0].port,
            "--cluster",
            "create",
            *addresses,
            "--cluster-replicas",
            "0",
            "--cluster-yes",
            timeout_s=30,
        )
        assert "All 16384 slots covered" in created, created
        async with asyncio.timeout(20):
            for server in servers:
                while "cluster_state:ok" not in await redis_cli(server.port, "CLUSTER", "INFO"):
                    await asyncio.sleep(0.1)  # cluster convergence has no event: poll
        yield servers
    finally:
        for server in servers:
            await server.stop()
        shutil.rmtree(directory, ignore_errors=True)
