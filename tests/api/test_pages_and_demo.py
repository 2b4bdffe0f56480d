"""The pages' routes and the demo helpers: served where they should be, refused elsewhere, and
every bad input answered with its documented error."""

from __future__ import annotations

import json
import time

import aiohttp
import jwt
import pytest

from hubbub.client import ConversationClient
from hubbub.config import demo_config, parse_config
from hubbub.server import build_app
from tests.api.conftest import API_TOML, frame_of_type, serve_app, subscribe, ws_connect

pytestmark = pytest.mark.integration

PAGES = [
    "/",
    "/console",
    "/openapi",
    "/client/hubbub.js",
    "/static/assets/style.css",
    "/static/console/console.js",
    "/static/console/chart.js",
    "/docs",
    "/docs/realtime-protocol",
]
DEMO_PAGES = ["/demo/chat", "/demo/call", "/demo/cursors", "/demo/devices", "/demo/agents"]


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        await response.read()
        return response.status


async def test_demo_mode_serves_every_page_and_says_what_runs() -> None:
    async with serve_app(build_app(demo_config())) as served, aiohttp.ClientSession() as http:
        for path in [*PAGES, *DEMO_PAGES, "/demo/voice"]:
            assert await status_of(http, served.http_url + path) == 200, path
        async with http.get(served.http_url + "/client/hubbub.js") as response:
            assert response.content_type in ("application/javascript", "text/javascript")
            assert "export async function connect" in await response.text()
        async with http.get(served.http_url + "/info") as response:
            info = await response.json()
        assert info["mode"] == "demo"
        assert info["apps"] == ["demo"]
        assert info["demoPages"] == DEMO_PAGES
        assert info["voiceDemo"] is True
        assert info["projects"] == ["support-desk"]
        # The built-in demo key is public by design; the landing page links the console with it.
        assert info["demoKeys"] == {
            "secret": "sk_id_demo:sk_secret_demo",
            "publishable": "pk_live_demo",
        }
        assert "realtime-protocol" in info["docs"]
        async with http.get(served.http_url + "/docs/realtime-protocol.md") as response:
            assert response.content_type == "text/markdown"
            assert "## 11. The browser client" in await response.text()
        for path in ("/docs/nothing.md", "/docs/..%2Fpyproject.md", "/docs/README.md"):
            assert await status_of(http, served.http_url + path) == 404, path


async def test_a_configured_server_has_no_demo_pages_or_helpers() -> None:
    async with (
        serve_app(build_app(parse_config(API_TOML))) as served,
        aiohttp.ClientSession() as http,
    ):
        for path in PAGES:
            assert await status_of(http, served.http_url + path) == 200, path
        for path in [*DEMO_PAGES, "/demo/voice", "/demo/api/projects"]:
            assert await status_of(http, served.http_url + path) == 404, path
        async with http.post(served.http_url + "/demo/api/token", json={}) as response:
            assert response.status == 404
        async with http.get(served.http_url + "/info") as response:
            info = await response.json()
        assert (info["mode"], info["demoPages"], info["demoKeys"]) == ("configured", [], {})
        assert info["apps"] == ["acme", "other"]


DEMO_ON_ELSEWHERE = (
    API_TOML
    + """
[demo]
enabled = true
app = "acme"
"""
)


async def test_demo_helpers_behind_the_flag_never_expose_a_real_secret() -> None:
    config = parse_config(DEMO_ON_ELSEWHERE)
    async with serve_app(build_app(config)) as served, aiohttp.ClientSession() as http:
        assert await status_of(http, served.http_url + "/demo/chat") == 200
        async with http.get(served.http_url + "/info") as response:
            info = await response.json()
        assert info["demoKeys"] == {}  # acme's secret is not the public demo one
        async with http.post(served.http_url + "/demo/api/token", json={"name": "Ada"}) as r:
            token = (await r.json())["token"]
        header = jwt.get_unverified_header(token)
        assert header["kid"] == "sk_id_acme"  # the app's first secret key signs


async def test_a_demo_token_carries_the_name_into_presence_and_messages() -> None:
    async with serve_app(build_app(demo_config())) as served, aiohttp.ClientSession() as http:
        before = int(time.time())
        async with http.post(
            served.http_url + "/demo/api/token", json={"name": " Ada Lovelace "}
        ) as r:
            assert r.status == 200
            ada = await r.json()
        assert ada["peerId"].startswith("ada-lovelace-")
        assert before + 3600 <= ada["expiresAt"] <= int(time.time()) + 3600
        claims = jwt.decode(ada["token"], options={"verify_signature": False})
        assert claims["peerMetadata"] == {"name": "Ada Lovelace"}
        async with http.post(served.http_url + "/demo/api/token", json={"peerId": "watcher"}) as r:
            watcher = await r.json()
        assert watcher["peerId"] == "watcher"
        assert "peerMetadata" not in jwt.decode(
            watcher["token"], options={"verify_signature": False}
        )

        watching, _ = await ws_connect(http, served, f"token={watcher['token']}")
        await subscribe(watching, "chat/x", include_sender_metadata=True)
        talking, _ = await ws_connect(http, served, f"token={ada['token']}")
        await subscribe(talking, "chat/x")
        snapshot = await frame_of_type(watching, "presence")
        assert snapshot["joined"] == []
        joined = await frame_of_type(watching, "presence")
        assert joined["joined"] == [{"peerId": ada["peerId"], "metadata": {"name": "Ada Lovelace"}}]
        await talking.send_json({"type": "publish", "channel": "chat/x", "data": "hi"})
        message = await frame_of_type(watching, "message")
        assert message["fromMetadata"] == {"name": "Ada Lovelace"}
        await watching.close()
        await talking.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({"name": ""}).encode(), 400),
        (json.dumps({"name": "x" * 41}).encode(), 400),
        (json.dumps({"name": "bad\u0007"}).encode(), 400),
        (json.dumps({"name": 7}).encode(), 400),
        (json.dumps({"peerId": "é"}).encode(), 400),
        (json.dumps({"peerId": ""}).encode(), 400),
        (json.dumps({"name": "x" * 5000}).encode(), 413),
        (b'{"name": ' + b"[" * 1000 + b"]" * 1000 + b"}", 400),  # a RecursionError once
        (b"", 200),
    ],
)
async def test_bad_token_requests_are_refused(body: bytes, status: int) -> None:
    async with serve_app(build_app(demo_config())) as served, aiohttp.ClientSession() as http:
        async with http.post(served.http_url + "/demo/api/token", data=body) as response:
            answer = await response.json()
            assert response.status == status, answer
            if status != 200:
                assert answer["error"] == "invalid_request"
        # The helper still works afterwards.
        async with http.post(served.http_url + "/demo/api/token", json={}) as response:
            assert response.status == 200


async def test_a_device_command_reaches_the_device_by_rest_publish() -> None:
    async with serve_app(build_app(demo_config())) as served, aiohttp.ClientSession() as http:
        async with http.post(served.http_url + "/demo/api/token", json={"peerId": "device-1"}) as r:
            token = (await r.json())["token"]
        device, _ = await ws_connect(http, served, f"token={token}")
        await subscribe(device, "devices/thermo-1/commands")
        url = served.http_url + "/demo/api/devices/thermo-1/commands"
        async with http.post(url, json={"command": {"action": "blink"}}) as response:
            assert (response.status, await response.json()) == (
                200,
                {"channel": "devices/thermo-1/commands", "delivered": 1},
            )
        message = await frame_of_type(device, "message")
        assert message["from"] == "dashboard"
        assert message["data"]["command"] == {"action": "blink"}
        for bad_url, body in (
            (served.http_url + "/demo/api/devices/a%2Fb/commands", {"command": 1}),
            (served.http_url + "/demo/api/devices/" + "d" * 65 + "/commands", {"command": 1}),
            (url, {"nothing": 1}),
        ):
            async with http.post(bad_url, json=body) as response:
                assert response.status == 400, bad_url
        await device.close()


async def test_the_voice_demo_lists_projects_with_a_key_each() -> None:
    async with (
        serve_app(build_app(demo_config())) as served,
        aiohttp.ClientSession() as http,
        http.get(served.http_url + "/demo/api/projects") as response,
    ):
        assert await response.json() == {
            "projects": [
                {
                    "id": "support-desk",
                    "name": "Acme Gadgets support desk",
                    "apiKey": "demo-conversation-key",
                }
            ]
        }


async def test_demo_mode_puts_conversations_on_the_bus_and_the_demo_key_steers_them() -> None:
    async with (
        serve_app(build_app(demo_config())) as served,
        aiohttp.ClientSession() as http,
        await ConversationClient.connect(served.ws_url + "/ws") as client,
    ):
        await client.auth("demo-conversation-key")
        conversation_id = await client.start("visitor")
        await client.next_turn()  # the greeting
        watcher, _ = await ws_connect(http, served, "key=pk_live_demo")
        channel = f"conversations/support-desk/{conversation_id}"
        await subscribe(watcher, channel)
        url = f"{served.http_url}/v1/conversations/{conversation_id}/say"
        headers = {"Authorization": "Bearer sk_id_demo:sk_secret_demo"}
        async with http.post(url, json={"text": "A human joins."}, headers=headers) as response:
            assert response.status == 200, await response.text()
        assert (await client.next_turn()).text == "A human joins."
        message = await frame_of_type(watcher, "message")
        assert message["channel"] == channel
        assert message["data"]["type"] == "start_ai_generation_output"
        await watcher.close()
