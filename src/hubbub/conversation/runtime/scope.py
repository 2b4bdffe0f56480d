"""What templates see (spec section 8, docs/conversation-projects.md "Templates"), time zones,
and the system prompt built from them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hubbub.conversation.runtime.data import ConversationData
from hubbub.conversation.runtime.services import EngineServices


def local_time(timezone: str, now: float) -> str:
    try:
        zone: Any = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return datetime.fromtimestamp(now, zone).isoformat(timespec="seconds")


def valid_timezone(timezone: str) -> bool:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def template_scope(
    data: ConversationData, services: EngineServices, **extra: Any
) -> dict[str, Any]:
    """The names a template may use; ``extra`` adds or replaces some (``match``, ...)."""
    merged: dict[str, Any] = {}
    for stage_id, values in data.variables.items():
        if stage_id != data.stage_id:
            merged.update(values)
    merged.update(data.stage_variables)
    return {
        "vars": merged,
        "stageVars": dict(data.stage_variables),
        "constants": data.project.project.constants,
        "userProfile": {"userId": data.record.user_id},
        "history": [{"role": m.role, "text": m.content} for m in data.history],
        "time": local_time(data.record.timezone, services.clock()),
        "tools": data.tool_results,
        "conversation": {"id": data.id, "stageId": data.stage_id},
        "hubbub": {"baseUrl": services.base_url},
        "match": {},
        "parameters": {},
        **extra,
    }


def system_prompt(data: ConversationData, services: EngineServices) -> str:
    """The stage's agent persona and prompt, rendered."""
    stage = data.stage
    render = services.renderer.render
    scope = template_scope(data, services)
    persona = ""
    if stage.agent_id is not None:
        persona = data.project.agents[stage.agent_id].persona
    parts = [render(text, scope) for text in (persona, stage.prompt) if text]
    return "\n\n".join(parts)
