"""Three ``hubbub serve`` processes sharing one Redis, and SDK clients to spread over them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from metered_realtime import (
    Direct,
    Disconnected,
    Message,
    Presence,
    SignallingClient,
)

from tests.support.redis import SHARED_URL, delete_prefix, unique_prefix
from tests.support.server import DEMO_APP_TOML, ServerProcess, running_server
from tests.support.tokens import mint_token

EVENT_TIMEOUT_S = 8.0
REPO = Path(__file__).resolve().parents[2]
JS_CLIENT = Path(__file__).with_name("js_client.mjs")

QUOTA_APP_TOML = """
[[apps]]
id = "quota"
max_concurrent_connections = 2
max_messages_per_period = 3

[[apps.keys]]
id = "pk_quota"
kind = "publishable"
actions = ["publish", "subscribe", "presence", "send"]
"""


def cluster_toml(
    url: str | list[str],
    prefix: str,
    presence_ttl_s: float = 3.0,
    sharded: bool = False,
    apps_toml: str = DEMO_APP_TOML + QUOTA_APP_TOML,
) -> str:
    return (
        f'[broker]\nkind = "redis"\nurl = {json.dumps(url)}\nkey_prefix = "{prefix}"\n'
        f"presence_ttl_s = {presence_ttl_s}\ncluster = {str(sharded).lower()}\n" + apps_toml
    )


@contextlib.asynccontextmanager
async def running_cluster(
    url: str | list[str] = SHARED_URL,
    size: int = 3,
    presence_ttl_s: float = 3.0,
    sharded: bool = False,
    apps_toml: str = DEMO_APP_TOML + QUOTA_APP_TOML,
) -> AsyncIterator[list[ServerProcess]]:
    prefix = unique_prefix()
    toml = cluster_toml(url, prefix, presence_ttl_s, sharded, apps_toml)
    async with contextlib.AsyncExitStack() as stack:
        nodes = await asyncio.gather(
            *(stack.enter_async_context(running_server(toml)) for _ in range(size))
        )
        try:
            yield list(nodes)
        finally:
            if url == SHARED_URL:
                stack.push_async_callback(delete_prefix, 6379, prefix)


@pytest.fixture
async def cluster() -> AsyncIterator[list[ServerProcess]]:
    async with running_cluster() as nodes:
        yield nodes


E = TypeVar("E")


@dataclass
class Inbox:
    """Everything one SDK client received, awaitable by type and condition."""

    client: SignallingClient
    events: list[Any] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        for kind in (Presence, Message, Direct, Disconnected):
            self.client.on(kind, self._record)

    def _record(self, event: Any) -> None:
        self.events.append(event)
        self.changed.set()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def next(
        self, kind: type[E], where: Callable[[E], bool] = lambda _: True, skip: int = 0
    ) -> E:
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while True:
                found = [e for e in self.of(kind) if where(e)]
                if len(found) > skip:
                    return found[skip]
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def sdk_client(
    node: ServerProcess, api_key: str | None = "pk_live_demo", token: str | None = None
) -> AsyncIterator[Inbox]:
    if token is not None:

        async def provide() -> str:
            return token

        client = SignallingClient(url=node.ws_url, token_provider=provide, reconnect=False)
    else:
        client = SignallingClient(url=node.ws_url, api_key=api_key, reconnect=False)
    inbox = Inbox(client)
    await client.connect()
    try:
        yield inbox
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def demo_token(peer_id: str, ttl_s: int = 600, peer_metadata: dict[str, Any] | None = None) -> str:
    claims: dict[str, Any] = {} if peer_metadata is None else {"peerMetadata": peer_metadata}
    token, _ = mint_token(peer_id, expires_in_s=ttl_s, **claims)
    return token


class JsClient:
    """The official JS SDK in a Node process, commanded over stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    async def _read_until(self, where: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        for event in self.events:
            if where(event):
                return event
        assert self.process.stdout is not None
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise AssertionError(f"JS client exited; saw {self.events}")
                event = json.loads(line)
                self.events.append(event)
                if where(event):
                    return event

    async def next(
        self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> dict[str, Any]:
        return await self._read_until(lambda e: e["event"] == kind and where(e))

    async def command(self, op: str, **fields: Any) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, "id": ident, **fields}).encode() + b"\n")
        await self.process.stdin.drain()
        return await self._read_until(lambda e: e.get("id") == ident)


@contextlib.asynccontextmanager
async def js_client(
    node: ServerProcess, api_key: str = "pk_live_demo", token: str | None = None
) -> AsyncIterator[JsClient]:
    """``token``: connect with that JWT (through the SDK's tokenProvider) instead of a key."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(JS_CLIENT),
        node.ws_url,
        api_key if token is None else f"token:{token}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    client = JsClient(process)
    try:
        await client.next("connected")
        yield client
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
