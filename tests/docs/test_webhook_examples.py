"""The examples of docs/webhooks-and-proxies.md: the doc shows them verbatim, and they work
against a real server with real clients."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from metered_realtime import Message, Presence

from tests.cluster.conftest import demo_token, sdk_client
from tests.support.server import DEMO_APP_TOML, running_server

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "webhooks-and-proxies.md"
EXAMPLES = ("examples/webhooks/receiver.py", "examples/webhooks/proxy_backend.py")
SECRET = "whsec_docs"


def load_example(relative: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(relative).stem, REPO / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_doc_shows_each_example_as_it_is(example: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    found = re.search(
        rf"<!-- include: {re.escape(example)} -->\n```python\n(.*?)```\n", doc, re.DOTALL
    )
    assert found, f"{example} is not included in {DOC.name}"
    assert found.group(1) == (REPO / example).read_text(encoding="utf-8")


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.integration
async def test_the_receiver_example_verifies_and_takes_every_event() -> None:
    receiver = load_example("examples/webhooks/receiver.py")
    events: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        arrived.set()

    async with serving(receiver.make_app(SECRET, on_event)) as base:
        config = DEMO_APP_TOML + f'\n[[apps.webhooks]]\nurl = "{base}/hooks"\nsecret = "{SECRET}"\n'
        async with running_server(config) as server:
            async with sdk_client(server, token=demo_token("alice")) as alice:
                await alice.client.subscribe("lobby")
                await alice.next(Presence)
                async with sdk_client(server, token=demo_token("bob")) as bob:
                    await bob.client.subscribe("lobby")
                    await bob.client.publish("lobby", {"text": "hello"})
                    await alice.next(Message)
            async with asyncio.timeout(10):
                while not any(e["name"] == "channel_vacated" for e in events):
                    arrived.clear()
                    await arrived.wait()
        assert [(e["name"], e.get("user_id")) for e in events] == [
            ("channel_occupied", None),
            ("member_added", "alice"),
            ("member_added", "bob"),
            ("client_event", "bob"),
            ("member_removed", "bob"),
            ("member_removed", "alice"),
            ("channel_vacated", None),
        ]
        # A forged request is refused; a retry of a handled request is not handled twice.
        body = json.dumps({"time_ms": 1, "events": [{"name": "channel_vacated", "channel": "x"}]})
        signature = receiver.hmac.new(SECRET.encode(), body.encode(), "sha256").hexdigest()
        async with aiohttp.ClientSession() as session:
            forged = {"X-Hubbub-Signature": "0" * 64, "X-Hubbub-Webhook-Id": "w1"}
            async with session.post(f"{base}/hooks", data=body, headers=forged) as answer:
                assert answer.status == 401
            signed = {"X-Hubbub-Signature": signature, "X-Hubbub-Webhook-Id": "w1"}
            for _ in range(2):
                async with session.post(f"{base}/hooks", data=body, headers=signed) as answer:
                    assert answer.status == 200
        assert [e["channel"] for e in events].count("x") == 1


@pytest.mark.integration
async def test_the_proxy_backend_example_decides_for_the_server() -> None:
    backend = load_example("examples/webhooks/proxy_backend.py")
    async with serving(backend.make_app()) as base:
        config = f"""
[[apps]]
id = "site"

[[apps.keys]]
id = "pk_live_site"
kind = "publishable"
connect_proxy = "{base}/connect"
subscribe_proxy = "{base}/subscribe"
publish_proxy = "{base}/publish"
"""
        async with running_server(config) as server, aiohttp.ClientSession() as session:
            url = f"{server.http_url}/v1?key=pk_live_site"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, headers={"Cookie": "session=stolen"})
            assert refused.value.status == 401
            cookie = {"Cookie": "theme=dark; session=s3cr3t-ann"}
            async with (
                session.ws_connect(url, headers=cookie) as ann,
                session.ws_connect(url, headers=cookie) as ann_phone,
            ):

                async def frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
                    while True:
                        found = json.loads((await ws.receive(timeout=10)).data)
                        if found["type"] != "presence":
                            return dict(found)

                assert (await frame(ann))["peerId"] == "ann"
                assert (await frame(ann_phone))["peerId"] == "ann"
                for ws in (ann, ann_phone):
                    await ws.send_json(
                        {"type": "subscribe", "channel": "rooms/1", "requestId": "s"}
                    )
                    assert await frame(ws) == {"type": "ack", "requestId": "s"}
                await ann.send_json({"type": "subscribe", "channel": "rooms/3", "requestId": "x"})
                assert (await frame(ann))["code"] == "not_a_member"
                await ann.send_json(
                    {"type": "publish", "channel": "rooms/1", "data": {"text": "oh darn"}}
                )
                assert (await frame(ann_phone))["data"] == {"text": "oh ***"}
                await ann.send_json(
                    {"type": "publish", "channel": "rooms/1", "data": 7, "requestId": "p"}
                )
                assert (await frame(ann))["code"] == "text_messages_only"
