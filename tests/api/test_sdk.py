"""The official JS SDK (@metered-ca/realtime over ``ws``) on the receiving end of REST calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Served, api_client, serve
from tests.support.server import without_history_fields

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
LISTENER = Path(__file__).parent / "js" / "sdk_listener.mjs"

if not (ROOT / "node_modules" / "@metered-ca" / "realtime").is_dir():
    pytest.skip("run `npm ci` first: the JS SDK is not installed", allow_module_level=True)


class SdkListener:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def next_event(self, name: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The next event called ``name``; any other event before it fails the test."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        assert line, "the SDK client exited early"
        event: dict[str, Any] = json.loads(line)
        assert event["event"] == name, event
        return event


@contextlib.asynccontextmanager
async def sdk_listener(served: Served, **options: Any) -> AsyncIterator[SdkListener]:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(LISTENER),
        served.ws_url,
        json.dumps(options),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        yield SdkListener(process)
    finally:
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_rest_publish_kick_and_minted_token_with_the_sdk() -> None:
    async with serve() as served, api_client(served) as api:
        minted = await api.call(
            "POST",
            "/v1/tokens",
            {"peerId": "sdk-alice", "channels": ["app/*"], "peerMetadata": {"n": "Alice"}},
        )
        token = minted.body["token"]
        async with (
            sdk_listener(
                served, token=token, channel="app/room-1", includeSenderMetadata=True
            ) as alice,
            sdk_listener(served, apiKey="pk_live_acme", channel="app/room-1") as bob,
        ):
            connected = await alice.next_event("connected")
            assert connected["peerId"] == "sdk-alice"
            # The SDK validated and kept the TURN entry the minted token carries.
            assert connected["iceServers"][0]["username"].endswith(":sdk-alice")
            await alice.next_event("subscribed")
            await bob.next_event("connected")
            await bob.next_event("subscribed")

            reply = await api.call(
                "POST",
                "/v1/channels/app%2Froom-1/publish",
                {"data": {"text": "hi"}, "from": "moderator", "peerMetadata": {"role": "bot"}},
            )
            assert without_history_fields(reply.body) == {"channel": "app/room-1", "delivered": 2}
            message = await alice.next_event("message")
            assert (message["channel"], message["from"], message["data"]) == (
                "app/room-1",
                "moderator",
                {"text": "hi"},
            )
            assert message["fromMetadata"] == {"role": "bot"}
            message = await bob.next_event("message")
            assert message["from"] == "moderator" and "fromMetadata" not in message

            reply = await api.call("POST", "/v1/channels/app/room-1/publish", {"data": 2})
            assert (await bob.next_event("message"))["from"] == "server"
            await alice.next_event("message")

            peers = await api.call("GET", "/v1/channels/app%2Froom-1/peers")
            assert {"peerId": "sdk-alice", "metadata": {"n": "Alice"}} in peers.body["peers"]

            kicked = await api.call("DELETE", "/v1/peers/sdk-alice")
            assert kicked.body == {"peerId": "sdk-alice", "closed": 1}
            closed = await alice.next_event("disconnected")
            assert (closed["code"], closed["willReconnect"]) == (4020, False)
            await asyncio.wait_for(alice.process.wait(), 5)
            # Bob is still connected and still receives.
            await api.call("POST", "/v1/channels/app/room-1/publish", {"data": 3})
            assert (await bob.next_event("message"))["data"] == 3
