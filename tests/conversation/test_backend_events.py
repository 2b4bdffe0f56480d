"""Which journal events become conversation webhooks, and with which fields (no network)."""

from __future__ import annotations

import pytest

from hubbub.conversation.runtime.backend_events import backend_event
from hubbub.conversation.runtime.store import ConversationRecord

RECORD = ConversationRecord(
    id="conv_1",
    project_id="lab",
    user_id="u1",
    agent_id=None,
    stage_id="intro",
    status="processing_user_input",
    timezone="UTC",
    created_at=0.0,
    updated_at=0.0,
)


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("conversation_end", "finished"),
        ("conversation_aborted", "aborted"),
        ("conversation_failed", "failed"),
    ],
)
def test_every_way_a_conversation_ends_is_conversation_ended(event_type: str, status: str) -> None:
    found = backend_event(event_type, {"reason": "why", "stageId": "other"}, RECORD)
    assert found == (
        "conversation_ended",
        {"user_id": "u1", "status": status, "reason": "why", "stage_id": "other"},
    )


def test_started_and_tool_called() -> None:
    assert backend_event("conversation_start", {"stageId": "intro"}, RECORD) == (
        "conversation_started",
        {"user_id": "u1", "stage_id": "intro", "agent_id": None},
    )
    name, fields = backend_event(
        "tool_call", {"toolId": "t", "parameters": {}, "result": {"ok": False}}, RECORD
    ) or ("", {})
    assert (name, fields["tool_id"], fields["ok"]) == ("tool_called", "t", False)


@pytest.mark.parametrize(
    "event_type", ["message", "action", "jump_to_stage", "conversation_resume"]
)
def test_other_journal_events_stay_inside(event_type: str) -> None:
    assert backend_event(event_type, {}, RECORD) is None
