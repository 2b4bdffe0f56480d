"""``auth.sessionSettings``: absent and ``null`` both mean "all defaults" (clients differ in
how they leave an optional object out); anything else that is not an object is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from hubbub.conversation.project.loader import parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.session.service import ConversationService
from tests.conversation.fakes import Clock, FakeChannel, command

PROJECT = """
id: plain
apiKeys: [{key: k}]
startingStageId: s
stages:
  - id: s
"""


@pytest_asyncio.fixture
async def service(tmp_path: Path) -> AsyncIterator[ConversationService]:
    project = parse_project(PROJECT, "plain.yaml", TemplateRenderer())
    store = ConversationStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}")
    service = ConversationService([project], store, clock=Clock(), speech=None)
    await service.start()
    yield service
    await service.stop()


async def auth(service: ConversationService, **fields: Any) -> dict[str, Any]:
    channel = FakeChannel()
    session = service.open_session(channel)
    try:
        return await command(channel, session, type="auth", apiKey="k", **fields)
    finally:
        await session.closed()


async def test_null_session_settings_mean_all_defaults(service: ConversationService) -> None:
    absent = await auth(service)
    null = await auth(service, sessionSettings=None)
    assert null["success"] is True, null
    assert null["projectSettings"] == absent["projectSettings"]


async def test_session_settings_that_are_not_an_object_are_refused(
    service: ConversationService,
) -> None:
    refused = await auth(service, sessionSettings=[])
    assert refused["type"] == "error"
    assert (
        refused["error"]
        == "Invalid message: sessionSettings: Expected `object | null`, got `array`"
    )
