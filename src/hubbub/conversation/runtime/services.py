"""What every conversation of one server shares: the store, templates, tools, LLMs and clocks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.protocol.pushes import Push
from hubbub.conversation.runtime.backend_events import ConversationEventSink
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.runtime.tools import ToolRunner
from hubbub.conversation.voice.providers.base import LlmProvider


class PushBus(Protocol):
    """Where every push of a conversation also goes, for watchers (the conversation bus)."""

    def carries(self, project_id: str) -> bool:
        """Whether the project's conversations are published (asked once per conversation)."""
        ...

    def publish(self, project_id: str, push: Push) -> None:
        """Take one push, in order with the conversation's others (never blocks or raises)."""


@dataclass(slots=True)
class EngineServices:
    store: ConversationStore
    renderer: TemplateRenderer
    tools: ToolRunner
    llm_for: Callable[[str], LlmProvider | None]  # project id -> its LLM, if configured
    clock: Callable[[], float]  # wall clock (seconds), for stored timestamps
    monotonic: Callable[[], float]  # for durations
    base_url: str = ""  # where this server listens, for templates that call Hubbub itself
    # Gets the data of every ``message`` event (its timing figures feed the metrics).
    on_message_event: Callable[[Mapping[str, Any]], None] | None = None
    # Gets conversation_started / conversation_ended / tool_called (webhooks), if configured.
    events: ConversationEventSink | None = None
    # Gets every push of the conversations of the projects it carries, if configured.
    bus: PushBus | None = None
