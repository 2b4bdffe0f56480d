"""A backend steps into a live conversation: say, input, stage, end (the bus's REST commands).

A conversation runs on one node; the command may arrive at any node. :meth:`Steering.steer`
applies it here when the conversation runs here, else asks every node through the broker
(:meth:`hubbub.core.node.Node.relay`, topic :data:`RELAY_TOPIC`; the node running it answers,
the others stay silent), else looks in the store: an ended conversation is ``ended``, a
resumable one (its node restarted, say) is resumed here without a session and the command
applied to it. Only conversations of the projects the bus carries can be steered; the others
are ``not_found`` as if they did not exist.

The key's channel patterns travel with the command and are checked where the conversation
lives, against its bus channel ``conversations/{projectId}/{conversationId}``: who may watch a
conversation's channel with ``publish`` may steer it.

Commands are applied at once and answered without waiting for their effect: ``say`` and
``input`` interrupt the answer being spoken (barge-in) and are queued after the work already
queued; ``stage`` jumps like ``go_to_stage``; ``end`` ends like ``end_conversation``.
"""

from __future__ import annotations

import logging
from typing import Final, Literal, Protocol

import msgspec

from hubbub.conversation.protocol import errors
from hubbub.conversation.runtime.engine import Conversation
from hubbub.conversation.runtime.states import TERMINAL, Command, State
from hubbub.conversation.session.bus import RealtimeBus, bus_channel
from hubbub.conversation.session.service import ConversationService
from hubbub.protocol.patterns import PatternError, compile_pattern

log = logging.getLogger(__name__)

RELAY_TOPIC: Final = "conversation.steer"
END_REASON: Final = "ended by backend"

SteerKind = Literal["say", "input", "stage", "end"]
Status = Literal["done", "not_found", "ended", "busy", "stage_not_found", "not_authorized"]


class SteerRequest(msgspec.Struct, frozen=True, kw_only=True):
    conversation_id: str
    kind: SteerKind
    text: str = ""  # say, input
    stage_id: str = ""  # stage
    patterns: tuple[str, ...] = ()  # the calling key's channel patterns


class SteerOutcome(msgspec.Struct, frozen=True, kw_only=True):
    status: Status
    project_id: str = ""
    stage_id: str = ""  # the stage when the command was taken (stage: the one it goes to)
    state: str = ""
    input_turn_id: str = ""  # input


class Relay(Protocol):
    """Asks every node (:meth:`hubbub.core.node.Node.relay`)."""

    async def relay(self, app_id: str, topic: str, payload: bytes) -> list[bytes]: ...


_encode = msgspec.msgpack.Encoder().encode
_decode_request = msgspec.msgpack.Decoder(SteerRequest).decode
_decode_outcome = msgspec.msgpack.Decoder(SteerOutcome).decode


class Steering:
    def __init__(self, service: ConversationService, bus: RealtimeBus, relay: Relay) -> None:
        self._service = service
        self._bus = bus
        self._relay = relay

    # --- on the node the conversation runs on -------------------------------------------

    def answer_relay(self, payload: bytes) -> bytes | None:
        """This node's answer to a relayed command: None unless the conversation runs here."""
        try:
            request = _decode_request(payload)
        except msgspec.DecodeError:
            log.warning("ignored a malformed relayed conversation command")
            return None
        outcome = self.steer_here(request)
        return None if outcome is None else _encode(outcome)

    def steer_here(self, request: SteerRequest) -> SteerOutcome | None:
        conversation = self._service.running(request.conversation_id)
        if conversation is None or not self._bus.carries(conversation.project.id):
            return None
        return _apply(conversation, request)

    # --- on the node the command arrived at -----------------------------------------------

    async def steer(self, request: SteerRequest) -> SteerOutcome:
        here = self.steer_here(request)
        if here is not None:
            return here
        for answer in await self._relay.relay(self._bus.app_id, RELAY_TOPIC, _encode(request)):
            try:
                return _decode_outcome(answer)
            except msgspec.DecodeError:
                log.warning("ignored a malformed answer to a relayed conversation command")
        return await self._from_store(request)

    async def _from_store(self, request: SteerRequest) -> SteerOutcome:
        service = self._service
        stored = await service.store.load(request.conversation_id)
        if stored is None:
            return SteerOutcome(status="not_found")
        record = stored.record
        project = service.projects.get(record.project_id)
        if project is None or not self._bus.carries(project.id):
            return SteerOutcome(status="not_found")
        if not _permitted(request, project.id):
            return SteerOutcome(status="not_authorized", project_id=project.id)
        if record.status in TERMINAL:
            return _ended(project.id, record.stage_id, record.status)
        found = await service.resume(project, request.conversation_id)
        if isinstance(found, str):
            # Not ended in the store but idle too long: resuming has just aborted it.
            if found == errors.CONVERSATION_NOT_RESUMABLE.format(status=State.ABORTED):
                return _ended(project.id, record.stage_id, State.ABORTED)
            return SteerOutcome(status="not_found")
        return _apply(found, request)


def encode_request(request: SteerRequest) -> bytes:
    return _encode(request)


def _permitted(request: SteerRequest, project_id: str) -> bool:
    channel = bus_channel(project_id, request.conversation_id)
    for text in request.patterns:
        try:
            if compile_pattern(text).matches(channel):
                return True
        except PatternError:
            continue
    return False


def _ended(project_id: str, stage_id: str, state: str) -> SteerOutcome:
    return SteerOutcome(status="ended", project_id=project_id, stage_id=stage_id, state=state)


def _apply(conversation: Conversation, request: SteerRequest) -> SteerOutcome:
    project_id = conversation.project.id

    def outcome(status: Status, **fields: str) -> SteerOutcome:
        values = {"stage_id": conversation.stage_id, "state": str(conversation.state), **fields}
        return SteerOutcome(status=status, project_id=project_id, **values)

    if not _permitted(request, project_id):
        return SteerOutcome(status="not_authorized", project_id=project_id)
    if conversation.terminal:
        return outcome("ended")
    match request.kind:
        case "say":
            if not conversation.can_say:
                return outcome("busy")
            conversation.say(request.text)
        case "input":
            if not conversation.accepts(Command.TEXT_INPUT):
                return outcome("busy")
            return outcome("done", input_turn_id=conversation.submit_text(request.text))
        case "stage":
            if request.stage_id not in conversation.project.stages:
                return outcome("stage_not_found")
            conversation.go_to_stage(request.stage_id)
            return outcome("done", stage_id=request.stage_id)
        case "end":
            conversation.request_end(END_REASON)
    return outcome("done")
