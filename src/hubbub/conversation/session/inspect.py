"""Read-only views of conversations for the REST listings and the console.

What is stored comes from the store; a conversation running on this node is shown as it is
now (its state, stage and variables in memory are ahead of the last write). Access is by
project: the caller passes the projects it may read (None: all), and a conversation outside
them is reported as not found, like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from hubbub.conversation.runtime.states import TERMINAL, State
from hubbub.conversation.runtime.store import ConversationRecord, EventRecord
from hubbub.conversation.session.service import ConversationService
from hubbub.errors import ConversationLayerError

# What GET /v1/conversations?state= takes: a state, or one of these groups.
STATE_GROUPS: Final[dict[str, frozenset[str]]] = {
    "live": frozenset(str(s) for s in State if s not in TERMINAL),
    "ended": frozenset(str(s) for s in TERMINAL),
}
STATE_FILTERS: Final = (*sorted(STATE_GROUPS), *(str(s) for s in State))


class UnknownCursor(ConversationLayerError, ValueError):
    """``before`` names no conversation the caller may read."""


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    conversation_id: str
    project_id: str
    user_id: str
    agent_id: str | None
    stage_id: str
    state: str
    started_at: float
    ended_at: float | None  # None while it is not over
    running_here: bool  # held by a session host on this node (state shown live)


@dataclass(frozen=True, slots=True)
class ConversationDetail:
    summary: ConversationSummary
    variables: dict[str, dict[str, Any]]  # stage id -> name -> value


class ConversationInspector:
    def __init__(self, service: ConversationService) -> None:
        self._service = service

    @property
    def project_ids(self) -> list[str]:
        return sorted(self._service.projects)

    def _summary(self, record: ConversationRecord) -> ConversationSummary:
        running = self._service.running(record.id)
        state = str(running.state) if running is not None else record.status
        stage = running.stage_id if running is not None else record.stage_id
        return ConversationSummary(
            conversation_id=record.id,
            project_id=record.project_id,
            user_id=record.user_id,
            agent_id=record.agent_id,
            stage_id=stage,
            state=state,
            started_at=record.created_at,
            ended_at=record.updated_at if state in STATE_GROUPS["ended"] else None,
            running_here=running is not None,
        )

    async def _readable(
        self, conversation_id: str, projects: Collection[str] | None
    ) -> ConversationRecord | None:
        record = await self._service.store.record(conversation_id)
        if record is None or (projects is not None and record.project_id not in projects):
            return None
        return record

    async def summaries(
        self,
        projects: Collection[str] | None,
        *,
        state: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[ConversationSummary]:
        """Newest first. ``state`` is a state or a group of :data:`STATE_GROUPS`."""
        cursor = None
        if before is not None:
            cursor = await self._readable(before, projects)
            if cursor is None:
                raise UnknownCursor(before)
        statuses = None if state is None else STATE_GROUPS.get(state, frozenset({state}))
        records = await self._service.store.list_records(
            project_ids=projects, statuses=statuses, limit=limit, before=cursor
        )
        return [self._summary(record) for record in records]

    async def detail(
        self, conversation_id: str, projects: Collection[str] | None
    ) -> ConversationDetail | None:
        record = await self._readable(conversation_id, projects)
        if record is None:
            return None
        running = self._service.running(conversation_id)
        if running is not None:
            variables = {stage: dict(values) for stage, values in running.variables.items()}
        else:
            variables = await self._service.store.variables_of(conversation_id)
        return ConversationDetail(self._summary(record), variables)

    async def events(
        self,
        conversation_id: str,
        projects: Collection[str] | None,
        *,
        after: int | None = None,
        limit: int = 100,
    ) -> list[EventRecord] | None:
        """A page of the stored event log, in order; None when the conversation is unknown."""
        if await self._readable(conversation_id, projects) is None:
            return None
        return await self._service.store.events_page(conversation_id, after=after, limit=limit)
