"""Conversation events reach the user's backend as webhooks: the same signed, batched sender as
the channel events, with the conversation's id and its project."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubbub.client import ConversationClient
from tests.conversation.lab_projects import REPO, server_config, write_projects
from tests.support.backend import Backend, running_backend
from tests.support.server import running_server

pytestmark = pytest.mark.integration

SECRET = "whsec_conversations"


def webhook_config(backend: Backend, projects: Path, database: Path, project_ids: str) -> str:
    return server_config(projects, f"sqlite+aiosqlite:///{database}") + (
        f"""
[[conversations.webhooks]]
name = "conversations"
url = "{backend.url("/conversations")}"
secret = "{SECRET}"
project_ids = {project_ids}

[[conversations.webhooks]]
name = "sleepy-only"
url = "{backend.url("/sleepy")}"
secret = "{SECRET}"
project_ids = ["sleepy"]
"""
    )


async def test_started_tool_called_and_ended_reach_the_backend(tmp_path: Path) -> None:
    write_projects(tmp_path / "projects")
    async with running_backend() as backend:
        config = webhook_config(backend, tmp_path / "projects", tmp_path / "db.sqlite", '["lab"]')
        async with (
            running_server(config, env={"PYTHONPATH": str(REPO)}) as server,
            await ConversationClient.connect(
                server.ws_url + "/ws", headers={"X-Forwarded-For": "2001:db8:f::1"}
            ) as client,
        ):
            await client.auth("lab-key")
            conversation_id = await client.start("user-7")
            await client.command("call_tool", toolId="echo", parameters={"word": "hi"})
            await client.command("call_tool", toolId="explode", check=False)
            await client.command("end_conversation")

            def complete(requests: list[object]) -> bool:
                return any(
                    e["name"] == "conversation_ended"
                    for r in backend.received("/conversations")
                    for e in r.json["events"]
                )

            await backend.wait_for(complete)
        assert backend.received("/sleepy") == []  # another project's webhook hears nothing
        requests = backend.received("/conversations")
        assert all(r.signed_with(SECRET) for r in requests)
        events = [e for r in requests for e in r.json["events"]]
        assert [e["name"] for e in events] == [
            "conversation_started",
            "tool_called",
            "tool_called",
            "conversation_ended",
        ]
        for event in events:
            assert (event["conversation_id"], event["project_id"]) == (conversation_id, "lab")
            assert event["user_id"] == "user-7"
        started, echoed, exploded, ended = events
        assert started["stage_id"] == "intro"
        assert (echoed["tool_id"], echoed["ok"], echoed["parameters"]) == (
            "echo",
            True,
            {"word": "hi"},
        )
        assert (exploded["tool_id"], exploded["ok"]) == ("explode", False)
        assert (ended["status"], ended["reason"]) == ("finished", "ended by client")
