"""Helpers for the integration tests: a real ``hubbub serve``, the official SDKs, raw sockets
(the raw client lives in ``tests.support.ws_client``).

Every wait is bounded and generous (the suite must pass on a loaded 2-core machine); nothing
sleeps to wait for an event.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.node import finish_node_script
from tests.support.server import DEMO_APP_TOML, ServerProcess, running_server
from tests.support.tokens import DEMO_SECRET, DEMO_SECRET_KEY_ID

REPO_ROOT = Path(__file__).resolve().parents[2]
JS_DIR = Path(__file__).parent / "js"
DEMO_PUBLISHABLE_KEY = "pk_live_demo"
WAIT_S = 15.0
NODE_SCENARIO_TIMEOUT_S = 60.0


async def start_node_scenario(
    script: str, params: dict[str, Any], timeout_s: float = NODE_SCENARIO_TIMEOUT_S
) -> asyncio.subprocess.Process:
    """Start ``js/<script>`` with ``params`` as its JSON argument (see ``finish_node_scenario``)."""
    node = shutil.which("node")
    assert node is not None, "Node.js is required for the JS SDK interop tests"
    assert (REPO_ROOT / "node_modules" / "@metered-ca" / "realtime").is_dir(), "run `npm ci`"
    return await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / script),
        json.dumps({"watchdogMs": (timeout_s - 5) * 1000, **params}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )


async def run_node_scenario(
    script: str, params: dict[str, Any], timeout_s: float = NODE_SCENARIO_TIMEOUT_S
) -> dict[str, Any]:
    """Run ``js/<script>`` with ``params`` as its JSON argument; return its JSON summary."""
    process = await start_node_scenario(script, params, timeout_s)
    return await finish_node_scenario(script, process, timeout_s)


async def finish_node_scenario(
    script: str, process: asyncio.subprocess.Process, timeout_s: float = NODE_SCENARIO_TIMEOUT_S
) -> dict[str, Any]:
    """Wait for a scenario to exit; check it succeeded and return its last (summary) line."""
    return await finish_node_script(process, script, timeout_s)


def app_config(
    *,
    server: str = "",
    limits: str = "",
    channel_patterns: str = '["**"]',
    allowed_origins: str = "[]",
) -> str:
    """The demo app's keys with the given [server] / [limits] lines and pk key scope."""
    return f"""
[server]
{server}

[limits]
{limits}

[[apps]]
id = "demo"

[[apps.keys]]
id = "{DEMO_PUBLISHABLE_KEY}"
kind = "publishable"
channel_patterns = {channel_patterns}
actions = ["publish", "subscribe", "presence", "send"]
allowed_origins = {allowed_origins}

[[apps.keys]]
id = "{DEMO_SECRET_KEY_ID}"
kind = "secret"
secret = "{DEMO_SECRET}"
channel_patterns = ["**"]
actions = ["publish", "subscribe", "presence", "send"]
"""


@pytest.fixture
async def demo_server() -> AsyncIterator[ServerProcess]:
    async with running_server(DEMO_APP_TOML) as server:
        yield server
