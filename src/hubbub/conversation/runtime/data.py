"""What one conversation holds: its project, its stored record, variables by stage, the chat
history and the last result of each tool. Plain data, shared by the parts of the runtime that
work on one conversation; only the engine's :class:`Conversation` creates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.project.schema import Stage
from hubbub.conversation.runtime.store import ConversationRecord
from hubbub.conversation.voice.providers.base import ChatMessage


@dataclass(slots=True)
class ConversationData:
    project: LoadedProject
    record: ConversationRecord
    variables: dict[str, dict[str, Any]]  # stage id -> name -> value
    history: list[ChatMessage]
    tool_results: dict[str, Any] = field(default_factory=dict)  # tool id -> its last result

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def stage_id(self) -> str:
        return self.record.stage_id

    @property
    def stage(self) -> Stage:
        return self.project.stages[self.record.stage_id]

    @property
    def stage_variables(self) -> dict[str, Any]:
        return self.variables.setdefault(self.record.stage_id, {})

    @property
    def agent_id(self) -> str | None:
        """The agent speaking: the conversation's own, else its stage's."""
        stage = self.project.stages.get(self.record.stage_id)
        return self.record.agent_id or (stage.agent_id if stage else None)

    def init_stage_variables(self, stage_id: str) -> None:
        values = self.variables.setdefault(stage_id, {})
        for descriptor in self.project.stages[stage_id].variables:
            values.setdefault(descriptor.name, descriptor.default)
