"""Steering a live conversation over REST: the POST routes under ``/v1/conversations/{id}``.

* ``POST /v1/conversations/{id}/say {"text"}`` — the agent says this now (voice included);
* ``POST /v1/conversations/{id}/input {"text"}`` — as if the user had typed it;
* ``POST /v1/conversations/{id}/stage {"stageId"}`` — jump to that stage;
* ``POST /v1/conversations/{id}/end`` — end it (body optional).

They need a secret key of the conversation bus's app (``[conversations] events_app``) holding
``publish`` and a channel pattern that covers the conversation's bus channel
``conversations/{projectId}/{conversationId}``. Any node answers: the command is relayed to the
node the conversation runs on (:mod:`hubbub.conversation.session.steering`).

Errors: 400 ``invalid_request`` (bad body), ``stage_not_found``; 401 ``unauthorized``; 403
``app_not_permitted`` (a key of another app), ``action_not_permitted`` (no ``publish``),
``channel_not_authorized`` (the channel is outside the key's patterns); 404
``conversation_not_found`` (unknown, of a project the bus does not carry, or the bus is off);
409 ``conversation_ended``, ``conversation_busy`` (``say``/``input`` while the user's voice
turn is open); 503 ``internal_error`` (the broker is unavailable).
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec
from aiohttp import web

from hubbub.api.conversations import MAX_ID_LENGTH
from hubbub.api.errors import ApiError, guarded, invalid_request, json_response
from hubbub.api.listing import Authorize
from hubbub.conversation.session.steering import Steering, SteerKind, SteerOutcome, SteerRequest

MAX_TEXT_CHARS: Final = 4096
MAX_BODY_BYTES: Final = 32 * 1024


class _TextBody(msgspec.Struct, forbid_unknown_fields=True):
    text: str


class _StageBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    stage_id: str


class _EndBody(msgspec.Struct, forbid_unknown_fields=True):
    pass


def conversation_not_found(conversation_id: str) -> ApiError:
    return ApiError(404, "conversation_not_found", f"no conversation {conversation_id}")


class ConversationCommandApi:
    def __init__(self, steering: Steering | None, app_id: str, authorize: Authorize) -> None:
        """``steering`` None: the bus is off, and every conversation is not found."""
        self._steering = steering
        self._app_id = app_id
        self._authorize = authorize

    def add_routes(self, app: web.Application) -> None:
        for kind in ("say", "input", "stage", "end"):
            path = f"/v1/conversations/{{conversation_id}}/{kind}"
            app.router.add_post(path, guarded(self._handler(kind)))

    def _handler(self, kind: SteerKind) -> Any:
        async def handle(request: web.Request) -> web.Response:
            return await self._steer(request, kind)

        return handle

    async def _steer(self, request: web.Request, kind: SteerKind) -> web.Response:
        key = self._authorize(request)
        if self._steering is not None and key.app_id != self._app_id:
            raise ApiError(
                403, "app_not_permitted", "only the conversation bus's app may steer conversations"
            )
        if "publish" not in key.actions:
            raise ApiError(403, "action_not_permitted", "the key does not hold 'publish'")
        conversation_id = request.match_info["conversation_id"]
        if len(conversation_id) > MAX_ID_LENGTH or not conversation_id.isprintable():
            raise conversation_not_found(conversation_id[:MAX_ID_LENGTH])
        text, stage_id = await _read_body(request, kind)
        if self._steering is None:
            raise conversation_not_found(conversation_id)
        command = SteerRequest(
            conversation_id=conversation_id,
            kind=kind,
            text=text,
            stage_id=stage_id,
            patterns=tuple(pattern.text for pattern in key.patterns),
        )
        outcome = await self._steering.steer(command)
        return _answer(conversation_id, command, outcome)


async def _read_body(request: web.Request, kind: SteerKind) -> tuple[str, str]:
    """(text, stageId) from the body, checked."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ApiError(413, "invalid_request", f"the body is over {MAX_BODY_BYTES} bytes")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "invalid_request", f"the body is over {MAX_BODY_BYTES} bytes")
    if kind == "end":
        if raw.strip():
            _decode(raw, _EndBody, "the body of end must be empty or {}")
        return "", ""
    if kind == "stage":
        stage = _decode(raw, _StageBody, 'the body must be {"stageId": "<stage id>"}')
        if not stage.stage_id or len(stage.stage_id) > 200:
            raise invalid_request("stageId must be a stage id")
        return "", stage.stage_id
    body = _decode(raw, _TextBody, 'the body must be {"text": "<what to say>"}')
    if not body.text.strip():
        raise invalid_request("text must not be empty")
    if len(body.text) > MAX_TEXT_CHARS:
        raise invalid_request(f"text must be at most {MAX_TEXT_CHARS} characters")
    return body.text, ""


_Body = TypeVar("_Body", _TextBody, _StageBody, _EndBody)


def _decode(raw: bytes, shape: type[_Body], message: str) -> _Body:
    try:
        return msgspec.json.decode(raw, type=shape)
    except msgspec.DecodeError as exc:
        raise invalid_request(f"{message} ({exc})") from None


def _answer(conversation_id: str, command: SteerRequest, outcome: SteerOutcome) -> web.Response:
    channel = f"conversations/{outcome.project_id}/{conversation_id}"
    match outcome.status:
        case "not_found":
            raise conversation_not_found(conversation_id)
        case "not_authorized":
            raise ApiError(403, "channel_not_authorized", f"not authorized: {channel}")
        case "ended":
            raise ApiError(
                409, "conversation_ended", f"conversation {conversation_id} has {outcome.state}"
            )
        case "busy":
            raise ApiError(
                409,
                "conversation_busy",
                f"the user is speaking (state {outcome.state}); {command.kind} is refused",
            )
        case "stage_not_found":
            raise ApiError(400, "stage_not_found", f"no stage {command.stage_id}")
    body: dict[str, Any] = {
        "conversationId": conversation_id,
        "projectId": outcome.project_id,
        "stageId": outcome.stage_id,
        "state": outcome.state,
    }
    if outcome.input_turn_id:
        body["inputTurnId"] = outcome.input_turn_id
    return json_response(body)
