"""A node's bad link to Redis, in a network namespace this creates (issue 11).

    async with lossy_link(redis_port) as link:
        link.url   # redis://<namespace side>:<relay port>/0: through a veth pair into the
                   # namespace, where a TCP relay (bench/delay_relay.py) forwards to
                   # link.host_ip:redis_port
        await link.set(bad=True)    # +300 ms towards Redis, 20 % of packets dropped
        await link.set(bad=False)

This kernel has no netem: the loss is nftables (``numgen random mod 100 < 20 drop`` on the
relay's port, both directions: real packet loss that TCP retransmits) and the delay is the
relay holding the bytes towards Redis. Needs root, ``ip`` and ``nft``; :func:`link_unavailable`
says why not when they are missing. redis-server must also bind ``link.host_ip``
(it exists once the context is entered). Names and addresses are unique per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.redis import free_port

RELAY = Path(__file__).resolve().parents[2] / "bench" / "delay_relay.py"


def link_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 nftables)"
    return None


def _sh(*args: str, check: bool = True) -> None:
    subprocess.run(args, check=check, capture_output=True)


@dataclass
class LossyLink:
    namespace: str
    host_ip: str
    ns_ip: str
    relay_port: int
    relay: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.ns_ip}:{self.relay_port}/0"

    def _in_ns(self, *args: str) -> None:
        _sh("ip", "netns", "exec", self.namespace, *args)

    async def set(self, *, bad: bool, delay_s: float = 0.3, loss_percent: int = 20) -> None:
        relay = self.relay
        assert relay is not None and relay.stdin is not None and relay.stdout is not None
        relay.stdin.write(f"{delay_s if bad else 0}\n".encode())
        await relay.stdin.drain()
        await relay.stdout.readline()  # the relay confirms the new delay
        if not bad:
            for chain in ("in", "out"):
                self._in_ns("nft", "flush", "chain", "inet", "hbf", chain)
            return
        loss = ("numgen", "random", "mod", "100", "<", str(loss_percent), "drop")
        port = str(self.relay_port)
        self._in_ns("nft", "add", "rule", "inet", "hbf", "in", "tcp", "dport", port, *loss)
        self._in_ns("nft", "add", "rule", "inet", "hbf", "out", "tcp", "sport", port, *loss)


@contextlib.asynccontextmanager
async def lossy_link(redis_port: int) -> AsyncIterator[LossyLink]:
    """A namespace joined to this one by a veth pair, with a relay to Redis inside."""
    problem = link_unavailable()
    if problem is not None:
        raise RuntimeError(problem)
    tag = os.getpid() % 100_000
    subnet = f"10.{200 + tag % 50}.{tag // 50 % 250}"
    link = LossyLink(f"hbfault{tag}", f"{subnet}.1", f"{subnet}.2", free_port())
    host_if, ns_if = f"hbh{tag}", f"hbn{tag}"
    _sh("ip", "netns", "del", link.namespace, check=False)
    _sh("ip", "link", "del", host_if, check=False)
    _sh("ip", "netns", "add", link.namespace)
    try:
        _sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _sh("ip", "link", "set", ns_if, "netns", link.namespace)
        _sh("ip", "addr", "add", f"{link.host_ip}/30", "dev", host_if)
        _sh("ip", "link", "set", host_if, "up")
        link._in_ns("ip", "addr", "add", f"{link.ns_ip}/30", "dev", ns_if)
        link._in_ns("ip", "link", "set", ns_if, "up")
        link._in_ns("ip", "link", "set", "lo", "up")
        link._in_ns("nft", "add", "table", "inet", "hbf")
        for chain, hook in (("in", "input"), ("out", "output")):
            spec = f"{{ type filter hook {hook} priority 0; }}"
            link._in_ns("nft", "add", "chain", "inet", "hbf", chain, spec)
        link.relay = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            link.namespace,
            sys.executable,
            str(RELAY),
            link.ns_ip,
            str(link.relay_port),
            link.host_ip,
            str(redis_port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert link.relay.stdout is not None
        async with asyncio.timeout(10):
            assert (await link.relay.stdout.readline()).strip() == b"listening"
        yield link
    finally:
        if link.relay is not None and link.relay.returncode is None:
            link.relay.kill()
            await link.relay.wait()
        _sh("ip", "netns", "del", link.namespace, check=False)
        _sh("ip", "link", "del", host_if, check=False)
