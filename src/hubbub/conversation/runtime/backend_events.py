"""Conversation events for the user's backend: webhooks (spec 16.3), as channel events are.

The journal writes every event of a conversation; three kinds also go to the backend, through a
:class:`ConversationEventSink` the server gives the runtime (the webhook dispatcher):

* ``conversation_start`` -> ``conversation_started`` (``user_id``, ``stage_id``, ``agent_id``);
* ``conversation_end`` / ``conversation_aborted`` (idle timeout) / ``conversation_failed`` ->
  ``conversation_ended`` with ``status`` ``finished`` / ``aborted`` / ``failed``, ``reason``,
  ``user_id`` and ``stage_id``;
* ``tool_call`` -> ``tool_called`` (``user_id``, ``stage_id``, ``tool_id``, ``parameters``,
  ``ok``, ``result``).

Every one carries ``conversation_id`` and ``project_id``. The sink takes an event without
waiting (it queues), so nothing here slows the conversation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from hubbub.conversation.runtime.store import ConversationRecord


class ConversationEventSink(Protocol):
    def wants_conversation_event(self, name: str) -> bool: ...

    def emit_conversation_event(
        self, name: str, project_id: str, conversation_id: str, fields: Mapping[str, Any]
    ) -> None:
        """Take one event (never blocks, never raises)."""


_ENDED: Final = {
    "conversation_end": "finished",
    "conversation_aborted": "aborted",
    "conversation_failed": "failed",
}


def backend_event(
    event_type: str, data: Mapping[str, Any], record: ConversationRecord
) -> tuple[str, dict[str, Any]] | None:
    """The webhook event a journal event is, with its fields; None for the others."""
    if event_type == "conversation_start":
        return "conversation_started", {
            "user_id": record.user_id,
            "stage_id": data.get("stageId", record.stage_id),
            "agent_id": record.agent_id,
        }
    status = _ENDED.get(event_type)
    if status is not None:
        return "conversation_ended", {
            "user_id": record.user_id,
            "status": status,
            "reason": data.get("reason"),
            "stage_id": data.get("stageId", record.stage_id),
        }
    if event_type == "tool_call":
        result = data.get("result")
        failed = isinstance(result, Mapping) and result.get("ok") is False
        return "tool_called", {
            "user_id": record.user_id,
            "stage_id": record.stage_id,
            "tool_id": data.get("toolId"),
            "parameters": data.get("parameters"),
            "ok": not failed,
            "result": result,
        }
    return None
