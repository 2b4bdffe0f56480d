"""Reading conversations over REST: the GET routes under ``/v1/conversations``.

* ``GET /v1/conversations?projectId=&state=&limit=&before=`` — newest first; ``before`` is the
  id of the last conversation of the previous page;
* ``GET /v1/conversations/{id}`` — its stage, state and variables;
* ``GET /v1/conversations/{id}/events?after=&limit=`` — the stored event log, a page at a time.

Conversations belong to projects, not to apps: an app's ``conversation_projects`` (in the
configuration) names the projects its secret keys may read, ``"*"`` for all of them. A
conversation of any other project answers 404 like one that does not exist. (The commands that
act on a conversation live elsewhere, in their own module.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from hubbub.api.errors import ApiError, guarded, invalid_request, json_response
from hubbub.api.listing import Authorize, query_limit, query_text
from hubbub.conversation.runtime.store import EventRecord
from hubbub.conversation.session.inspect import (
    STATE_FILTERS,
    ConversationInspector,
    ConversationSummary,
    UnknownCursor,
)

ALL_PROJECTS: Final = "*"
MAX_EVENTS_PAGE: Final = 1000
# Ids are ours (conv_ + hex); anything longer or odder is not one.
MAX_ID_LENGTH: Final = 64
MAX_PROJECT_ID_LENGTH: Final = 200  # the store's column


def _not_found(conversation_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no conversation {conversation_id}")


def summary_body(summary: ConversationSummary) -> dict[str, Any]:
    return {
        "conversationId": summary.conversation_id,
        "projectId": summary.project_id,
        "userId": summary.user_id,
        "stageId": summary.stage_id,
        "state": summary.state,
        "startedAt": round(summary.started_at, 3),
        "endedAt": None if summary.ended_at is None else round(summary.ended_at, 3),
    }


def event_body(event: EventRecord) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "eventType": event.event_type,
        "eventData": event.data,
        "inputTurnId": event.input_turn_id,
        "outputTurnId": event.output_turn_id,
        "createdAt": round(event.created_at, 3),
    }


class ConversationReadApi:
    def __init__(
        self,
        inspector: ConversationInspector | None,
        authorize: Authorize,
        projects_by_app: Mapping[str, list[str]],
    ) -> None:
        """``inspector`` None: this server holds no conversations (every list is empty)."""
        self._inspector = inspector
        self._authorize = authorize
        self._projects_by_app = projects_by_app

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/v1/conversations", guarded(self.list_conversations))
        router.add_get("/v1/conversations/{conversation_id}", guarded(self.conversation))
        router.add_get("/v1/conversations/{conversation_id}/events", guarded(self.events))

    def _readable_projects(self, request: web.Request) -> frozenset[str] | None:
        """The projects the caller's app may read; None means all of them."""
        key = self._authorize(request)
        projects = self._projects_by_app.get(key.app_id, [])
        return None if ALL_PROJECTS in projects else frozenset(projects)

    def _conversation_id(self, request: web.Request) -> str:
        conversation_id = request.match_info["conversation_id"]
        if len(conversation_id) > MAX_ID_LENGTH or not conversation_id.isprintable():
            raise _not_found(conversation_id[:MAX_ID_LENGTH])
        return conversation_id

    async def list_conversations(self, request: web.Request) -> web.Response:
        projects = self._readable_projects(request)
        project_id = query_text(request, "projectId", MAX_PROJECT_ID_LENGTH)
        state = query_text(request, "state")
        if state is not None and state not in STATE_FILTERS:
            raise invalid_request(f"state must be one of {', '.join(STATE_FILTERS)}")
        limit = query_limit(request)
        before = query_text(request, "before", MAX_ID_LENGTH)
        if project_id is not None:
            if projects is not None and project_id not in projects:
                raise ApiError(
                    403, "project_not_authorized", f"this app may not read project {project_id}"
                )
            projects = frozenset({project_id})
        if self._inspector is None or projects == frozenset():
            return json_response({"conversations": []})
        try:
            found = await self._inspector.summaries(
                projects, state=state, limit=limit, before=before
            )
        except UnknownCursor:
            raise invalid_request("before must be the id of a conversation you can read") from None
        return json_response({"conversations": [summary_body(s) for s in found]})

    async def conversation(self, request: web.Request) -> web.Response:
        projects = self._readable_projects(request)
        conversation_id = self._conversation_id(request)
        detail = None
        if self._inspector is not None and projects != frozenset():
            detail = await self._inspector.detail(conversation_id, projects)
        if detail is None:
            raise _not_found(conversation_id)
        summary = detail.summary
        return json_response(
            {
                **summary_body(summary),
                "agentId": summary.agent_id,
                "runningHere": summary.running_here,
                "variables": detail.variables,
            }
        )

    async def events(self, request: web.Request) -> web.Response:
        projects = self._readable_projects(request)
        conversation_id = self._conversation_id(request)
        raw_after = query_text(request, "after")
        after = None
        if raw_after is not None:
            if not (raw_after.isascii() and raw_after.isdigit()) or len(raw_after) > 12:
                raise invalid_request("after must be a non-negative integer (an event's seq)")
            after = int(raw_after)
        limit = query_limit(request, maximum=MAX_EVENTS_PAGE)
        found = None
        if self._inspector is not None and projects != frozenset():
            found = await self._inspector.events(
                conversation_id, projects, after=after, limit=limit
            )
        if found is None:
            raise _not_found(conversation_id)
        return json_response(
            {
                "conversationId": conversation_id,
                "events": [event_body(e) for e in found],
                # Where the next page starts; null when this one was the last.
                "nextAfter": found[-1].seq if len(found) == limit else None,
            }
        )
