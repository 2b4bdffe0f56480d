"""Shared pieces of a running conversation: its services, the template context, typed variables."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hubbub.conversation.project.schema import VariableDescriptor
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.runtime.tools import ToolRunner
from hubbub.conversation.voice.providers.base import LlmProvider


@dataclass(slots=True)
class EngineServices:
    """What every conversation of one server shares."""

    store: ConversationStore
    renderer: TemplateRenderer
    tools: ToolRunner
    llm_for: Callable[[str], LlmProvider | None]  # project id -> its LLM, if configured
    clock: Callable[[], float]  # wall clock (seconds), for stored timestamps
    monotonic: Callable[[], float]  # for durations
    base_url: str = ""  # where this server listens, for templates that call Hubbub itself
    # Gets the data of every ``message`` event (its timing figures feed the metrics).
    on_message_event: Callable[[Mapping[str, Any]], None] | None = None


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


class VariableTypeError(Exception):
    pass


def coerce(value: Any, descriptor: VariableDescriptor | None) -> Any:
    """Values rendered from templates are strings; descriptors say what they should be."""
    if descriptor is None or not isinstance(value, str):
        return value
    kind = descriptor.type
    try:
        if kind == "integer":
            return int(value.strip())
        if kind == "number":
            return float(value.strip())
        if kind == "boolean":
            lowered = value.strip().lower()
            if lowered in ("true", "yes", "1"):
                return True
            if lowered in ("false", "no", "0", ""):
                return False
            raise ValueError(value)
        if kind == "json":
            return json.loads(value)
    except ValueError:
        raise VariableTypeError(f"{descriptor.name}: {value!r} is not a valid {kind}") from None
    return value


def render_values(
    renderer: TemplateRenderer, values: Mapping[str, Any], scope: Mapping[str, Any]
) -> dict[str, Any]:
    """Render every string (recursively) in ``values``; other JSON values pass through."""

    def render(value: Any) -> Any:
        if isinstance(value, str):
            return renderer.render(value, scope)
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v) for v in value]
        return value

    return {key: render(value) for key, value in values.items()}
