"""Every page in a real browser: the landing page, the OpenAPI reader, the docs, the five demo
apps, the voice demo and the console, against one demo-mode ``hubbub serve``.

One headless Chromium runs all of it (tests/browser/pages.mjs, several tabs), so the suite pays
for one browser start. Each page is screenshotted into ``$HUBBUB_SCREENSHOT_DIR`` (or a temp
directory, printed) for a person to look at; the checks below are what a machine can see.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from hubbub.client import ConversationClient
from tests.support.node import run_node_script
from tests.support.server import running_server

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("pages.mjs")
CHROMIUM = Path("/usr/bin/chromium")
CHECKS = ["landing", "openapi", "docs", "client", "chat", "console", "call", "cursors", "devices"]
CHECKS += ["agents", "voice"]

if not CHROMIUM.exists() or not (REPO / "node_modules" / "playwright-core").exists():
    pytest.skip("needs Debian chromium and `npm ci` (playwright-core)", allow_module_level=True)


async def finished_conversation(ws_url: str) -> str:
    """A support-desk conversation from greeting to goodbye, for the console to show."""
    async with await ConversationClient.connect(ws_url + "/ws") as client:
        await client.auth("demo-conversation-key")
        conversation_id = await client.start("browser-test")
        await client.next_turn()
        for text in ("where is my package?", "bye"):
            await client.send_text(text)
            await client.next_turn()
        await client.wait_for(
            lambda m: (
                m.get("type") == "conversation_event" and m.get("eventType") == "conversation_end"
            )
        )
    return conversation_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    given = os.environ.get("HUBBUB_SCREENSHOT_DIR")
    shots = Path(given) if given else tmp_path_factory.mktemp("screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {shots}")
    async with running_server(None, env={"WEBRTC_STUN_URL": ""}) as server:
        conversation_id = await finished_conversation(server.ws_url)
        result = await run_node_script(
            SCRIPT, server.http_url, str(shots), conversation_id, timeout_s=300
        )
    result["shots"] = shots
    yield result


@pytest.mark.parametrize("name", CHECKS)
async def test_page(run: dict[str, Any], name: str) -> None:
    check = run["checks"].get(name)
    assert check is not None, f"{name} did not run: {sorted(run['checks'])}"
    assert check["ok"], check["detail"]


async def test_no_page_logs_an_error(run: dict[str, Any]) -> None:
    assert run["errors"] == []


async def test_the_console_never_puts_the_key_in_a_url(run: dict[str, Any]) -> None:
    console = [r["url"] for r in run["requests"] if r["page"] == "console"]
    assert any("/v1/connections" in url for url in console)  # it did talk to the API
    assert [url for url in console if "sk_secret" in url or "#key" in url] == []


async def test_every_page_was_screenshotted(run: dict[str, Any]) -> None:
    names = {Path(path).stem for path in run["screenshots"]}
    assert names >= {
        "landing",
        "openapi",
        "docs",
        "chat",
        "chat-kicked",
        "console",
        "console-channel",
        "console-conversation",
        "call",
        "cursors",
        "devices",
        "agents",
        "voice",
    }
    for path in run["screenshots"]:
        assert Path(path).stat().st_size > 10_000, path
