"""Configuration and helpers for the conversation bus tests (one node and the cluster)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from hubbub.auth.tokens import mint_token
from hubbub.client import ConversationClient
from hubbub.config import key_ring_of, parse_config
from tests.support.server import DEMO_APP_TOML, ServerProcess

SECRET = "Bearer sk_id_demo:sk_secret_demo"

# The demo app (the bus's) with narrower keys, and another app.
APPS_TOML = (
    DEMO_APP_TOML
    + """
[[apps.keys]]
id = "sk_id_desk_only"
kind = "secret"
secret = "sk_secret_desk_only"
channel_patterns = ["conversations/support-desk/**"]
actions = ["publish", "subscribe"]

[[apps.keys]]
id = "sk_id_reader"
kind = "secret"
secret = "sk_secret_reader"
channel_patterns = ["**"]
actions = ["subscribe"]

[[apps]]
id = "other"

[[apps.keys]]
id = "sk_id_other"
kind = "secret"
secret = "sk_secret_other"
channel_patterns = ["**"]
actions = ["publish", "subscribe"]
"""
)


def bus_toml(projects: Path, database_url: str, carried: str = '["lab", "support-desk"]') -> str:
    return (
        f"""
[conversations]
projects_dir = "{projects}"
database_url = "{database_url}"
events_app = "demo"
events_projects = {carried}
auth_attempts_per_ip = 0
python_tools = ["tests.conversation.lab_tools:echo"]
"""
        + APPS_TOML
    )


def watcher_token(peer_id: str, channels: list[str]) -> str:
    """An ordinary realtime token of the demo app, for a supervisor that watches."""
    key = key_ring_of(parse_config(DEMO_APP_TOML)).secret("sk_id_demo")
    assert key is not None
    now = int(time.time())
    return mint_token(
        key,
        peer_id,
        expires_at=now + 600,
        issued_at=now,
        channels=channels,
        permissions=["subscribe"],
    )


async def steer(
    node: ServerProcess,
    conversation_id: str,
    command: str,
    body: Any = None,
    *,
    authorization: str | None = SECRET,
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {} if authorization is None else {"Authorization": authorization}
    url = f"{node.http_url}/v1/conversations/{conversation_id}/{command}"
    async with aiohttp.ClientSession() as session:
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with session.post(url, headers=headers, **kwargs) as response:
            return response.status, await response.json()


def without_session(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "sessionId"}


def pushes(client: ConversationClient) -> list[dict[str, Any]]:
    """What the client received unasked (replies to its commands carry a requestId)."""
    return [without_session(m) for m in client.log if "requestId" not in m]
