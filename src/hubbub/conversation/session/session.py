"""One client session: authentication, session settings, and the commands of spec sections
2-3 applied to the session's conversation. Transport-independent: a transport feeds
:meth:`Session.handle_message` and provides the :class:`ClientChannel` it writes to.

Commands that wait for the conversation's worker (stage jumps, actions, the end) reply from a
small task, so the session keeps reading: a barge-in must get through while the agent works.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.project.schema import ApiKey
from hubbub.conversation.protocol import commands as m
from hubbub.conversation.protocol import errors
from hubbub.conversation.protocol.errors import CommandError
from hubbub.conversation.runtime.context import VariableTypeError, valid_timezone
from hubbub.conversation.runtime.engine import Conversation
from hubbub.conversation.runtime.responder import ActionMatch
from hubbub.conversation.runtime.states import (
    INPUT_COMMANDS,
    TERMINAL,
    Command,
    Event,
    State,
    accepts,
)
from hubbub.conversation.runtime.tools import content_parts
from hubbub.conversation.session.channel import ClientChannel, SessionHandler, VoiceChunk
from hubbub.conversation.voice.input import SERVER_VAD_TURN_ID, VoiceInput
from hubbub.conversation.voice.output import TurnVoice
from hubbub.conversation.voice.providers.base import ProviderError

if TYPE_CHECKING:
    from hubbub.conversation.session.service import ConversationService

log = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()
_TRANSCRIPTS = frozenset({"ai_transcribed_chunk", "user_transcribed_chunk"})


class Session(SessionHandler):
    def __init__(self, service: ConversationService, channel: ClientChannel, session_id: str):
        self._service = service
        self._channel = channel
        self.id = session_id
        self._project: LoadedProject | None = None
        self._key: ApiKey | None = None
        self._settings = m.SessionSettings()
        self._receive_transcripts = True
        self._receive_events = True
        self._conversation: Conversation | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False
        self._voice_input: VoiceInput | None = None
        self._generate_voice = False
        self._handlers: dict[str, Callable[[Any], Awaitable[None]]] = {
            "start_conversation": self._start,
            "resume_conversation": self._resume,
            "end_conversation": self._end,
            "send_user_text_input": self._text_input,
            "start_user_voice_input": self._voice_start,
            "send_user_voice_chunk": self._voice_chunk,
            "end_user_voice_input": self._voice_end,
            "go_to_stage": self._go_to_stage,
            "set_var": self._set_var,
            "get_var": self._get_var,
            "get_all_vars": self._get_all_vars,
            "run_action": self._run_action,
            "call_tool": self._call_tool,
            "abort_ai_generation": self._abort_generation,
        }

    # --- output ----------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        if not self._closed:
            self._channel.send_message(_ENCODER.encode(message))

    def deliver(self, message: dict[str, Any]) -> None:
        """A push from the conversation (the :class:`ConversationSink` side)."""
        kind = message["type"]
        if kind in _TRANSCRIPTS and not self._receive_transcripts:
            return
        if kind == "conversation_event" and not self._receive_events:
            return
        message["sessionId"] = self.id
        self._send(message)

    def _transport_error(self, text: str, request_id: str | None) -> None:
        message: dict[str, Any] = {"type": "error", "error": text}
        if request_id is not None:
            message["requestId"] = request_id
        self._send(message)

    def _reply(self, command: str, request_id: str | None, **fields: Any) -> None:
        message: dict[str, Any] = {"type": command}
        if request_id is not None:
            message["requestId"] = request_id
        message["sessionId"] = self.id
        if "conversationId" not in fields and self._conversation is not None:
            fields["conversationId"] = self._conversation.id
        message["success"] = True
        message.update(fields)
        self._send(message)

    def _fail(self, command: str, request_id: str | None, text: str) -> None:
        message: dict[str, Any] = {"type": command}
        if request_id is not None:
            message["requestId"] = request_id
        message.update(sessionId=self.id, success=False, error=text)
        self._send(message)

    def _later(self, command: str, request_id: str | None, work: Awaitable[dict[str, Any]]) -> None:
        """Reply when ``work`` is done, without holding up the session's reading."""

        async def finish() -> None:
            try:
                fields = await work
            except CommandError as exc:
                self._fail(command, request_id, exc.message)
            except Exception:  # logged by the conversation that failed
                self._fail(command, request_id, errors.INTERNAL_ERROR)
            else:
                self._reply(command, request_id, **fields)

        task = asyncio.create_task(finish())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # --- input -----------------------------------------------------------------------------

    async def handle_message(self, payload: str | bytes) -> None:
        try:
            envelope = m.decode_envelope(payload)
            if envelope.type == "auth":
                await self._auth(envelope)
                return
            if self._key is None:
                self._transport_error(errors.AUTHENTICATION_REQUIRED, envelope.request_id)
                return
            feature = m.FEATURE_OF[envelope.type]
            if not self._key.permits(feature):
                self._transport_error(errors.feature_not_permitted(feature), envelope.request_id)
                return
            command = m.decode_command(envelope)
        except m.DecodeFailure as failure:
            self._transport_error(failure.message, failure.request_id)
            return
        if command.sessionId is not None and command.sessionId != self.id:
            self._transport_error(errors.SESSION_ID_MISMATCH, envelope.request_id)
            return
        try:
            await self._handlers[envelope.type](command)
        except CommandError as exc:
            self._fail(envelope.type, envelope.request_id, exc.message)
        except Exception:  # a bug: the client gets a plain refusal, the log gets the details
            log.exception("session %s: %s failed", self.id, envelope.type)
            self._fail(envelope.type, envelope.request_id, errors.INTERNAL_ERROR)

    async def handle_audio(self, input_turn_id: str, audio: bytes) -> None:
        """Audio for no open input turn is dropped (spec 5); so is audio before auth."""
        if self._voice_input is not None and self._has_live_conversation():
            await self._voice_input.audio(self._conversation, input_turn_id, audio)

    async def closed(self) -> None:
        self._closed = True
        if self._voice_input is not None:
            await self._voice_input.close()
        for task in list(self._pending):
            task.cancel()
        if self._conversation is not None:
            self._conversation.detach(self)
            self._conversation = None

    # --- auth ------------------------------------------------------------------------------

    async def _auth(self, envelope: m.Envelope) -> None:
        if not self._service.allow_auth_attempt(self._channel.client_ip):
            self._transport_error(errors.TOO_MANY_AUTH_ATTEMPTS, envelope.request_id)
            self._channel.close()
            return
        request: m.Auth = m.decode_command(envelope)
        reply = "auth"
        if self._key is not None:
            self._fail(reply, request.requestId, errors.ALREADY_AUTHENTICATED)
            return
        found = self._service.find_key(request.apiKey)
        if found is None or not found[1].active:
            self._fail(reply, request.requestId, errors.INVALID_API_KEY)
            return
        project, key = found
        if not key.permits_transport(self._channel.kind):
            self._fail(reply, request.requestId, errors.transport_not_permitted(self._channel.kind))
            return
        settings = request.sessionSettings
        wanted = (
            (settings.receiveVoiceOutput, "voice_output", errors.NO_VOICE_OUTPUT),
            (settings.receiveTranscriptionUpdates, "text_output", errors.NO_TEXT_OUTPUT),
            (settings.receiveEvents, "events", errors.NO_EVENTS),
        )
        for asked, feature, refusal in wanted:
            if asked and not key.permits(feature):
                self._fail(reply, request.requestId, refusal)
                return
        self._receive_transcripts = _effective(
            settings.receiveTranscriptionUpdates, key, "text_output"
        )
        self._receive_events = _effective(settings.receiveEvents, key, "events")
        self._project, self._key, self._settings = project, key, settings
        config = project.project
        speech = self._service.speech
        accept_voice = config.accept_voice and settings.sendVoiceInput and speech is not None
        if accept_voice and speech is not None:
            self._voice_input = VoiceInput(speech, project, settings.sendAudioFormat)
        self._generate_voice = (
            speech is not None
            and config.generate_voice
            and _effective(settings.receiveVoiceOutput, key, "voice_output")
        )
        asr = msgspec.to_builtins(config.asr_config) if accept_voice else None
        self._reply(
            reply,
            request.requestId,
            projectSettings={
                "projectId": project.id,
                "acceptVoice": accept_voice,
                "generateVoice": self._generate_voice,
                "asrConfig": asr,
            },
        )

    # --- conversation commands -------------------------------------------------------------

    def _active(self, command: m._OnConversation, kind: Command) -> Conversation:
        conversation = self._conversation
        if (
            conversation is None
            or conversation.state in TERMINAL
            or not conversation.attached_to(self)
        ):
            raise CommandError(errors.NO_ACTIVE_CONVERSATION)
        if command.conversationId != conversation.id:
            raise CommandError(errors.CONVERSATION_ID_MISMATCH)
        if not accepts(conversation.state, kind):
            if kind in INPUT_COMMANDS:
                raise CommandError(errors.cannot_receive_input(conversation.state))
            raise CommandError(errors.NO_ACTIVE_CONVERSATION)
        return conversation

    def _has_live_conversation(self) -> bool:
        conversation = self._conversation
        return (
            conversation is not None
            and conversation.state not in TERMINAL
            and conversation.attached_to(self)
        )

    def _project_or_fail(self) -> LoadedProject:
        assert self._project is not None  # guarded by the auth check in handle_message
        return self._project

    async def _start(self, command: m.StartConversation) -> None:
        project = self._project_or_fail()
        if self._has_live_conversation():
            raise CommandError(errors.CONVERSATION_ALREADY_ACTIVE)
        stage_id = command.stageId or project.project.starting_stage_id
        if stage_id not in project.stages:
            raise CommandError(errors.STAGE_NOT_FOUND)
        if command.agentId is not None and command.agentId not in project.agents:
            raise CommandError(errors.AGENT_NOT_FOUND)
        timezone = command.timezone or project.project.timezone
        if not valid_timezone(timezone):
            raise CommandError(errors.INVALID_TIMEZONE)
        conversation = self._service.create(
            project,
            user_id=command.userId,
            stage_id=stage_id,
            agent_id=command.agentId,
            timezone=timezone,
        )
        conversation.attach(self)
        self._conversation = conversation
        if conversation.actions.enters_silently():
            conversation.move(Event.AWAIT_INPUT)
        self._reply("start_conversation", command.requestId, conversationId=conversation.id)
        variables = dict(command.stageVariables)
        conversation.submit(lambda: conversation.actions.start(variables))

    async def _resume(self, command: m.ResumeConversation) -> None:
        project = self._project_or_fail()
        current = self._conversation
        live = self._has_live_conversation() and current is not None
        if live and current is not None and current.id != command.conversationId:
            raise CommandError(errors.CONVERSATION_ALREADY_ACTIVE)
        found = await self._service.resume(project, command.conversationId)
        if isinstance(found, str):
            raise CommandError(found)
        previous = found.state
        found.attach(self)
        self._conversation = found
        found.cancel_voice()  # a voice turn left open by the session it came from
        if found.state in (State.INITIALIZED, State.AWAITING_USER_INPUT):
            found.move(Event.AWAIT_INPUT)
        found.touch()
        self._reply("resume_conversation", command.requestId, conversationId=found.id)
        found.event("conversation_resume", {"stageId": found.stage_id, "previousStatus": previous})

    async def _end(self, command: m.EndConversation) -> None:
        conversation = self._active(command, Command.END)
        conversation.interrupt()

        async def end() -> dict[str, Any]:
            await conversation.submit(lambda: conversation.actions.end("ended by client"))
            return {}

        self._later("end_conversation", command.requestId, end())

    async def _text_input(self, command: m.SendUserTextInput) -> None:
        conversation = self._active(command, Command.TEXT_INPUT)
        if not self._settings.sendTextInput:
            raise CommandError(errors.TEXT_INPUT_DISABLED)
        turn_id = conversation.submit_text(command.text)
        self._reply("send_user_text_input", command.requestId, inputTurnId=turn_id)

    def _voice_turns(self, command: m._OnConversation) -> tuple[Conversation, VoiceInput]:
        conversation = self._conversation
        if conversation is None or not self._has_live_conversation():
            raise CommandError(errors.NO_ACTIVE_CONVERSATION)
        if command.conversationId != conversation.id:
            raise CommandError(errors.CONVERSATION_ID_MISMATCH)
        if self._voice_input is None:
            raise CommandError(errors.VOICE_INPUT_DISABLED)
        return conversation, self._voice_input

    async def _voice_start(self, command: m.StartUserVoiceInput) -> None:
        _, voice = self._voice_turns(command)
        conversation = self._active(command, Command.VOICE_START)
        turn_id = await voice.start(conversation)
        self._reply("start_user_voice_input", command.requestId, inputTurnId=turn_id)

    async def _voice_chunk(self, command: m.SendUserVoiceChunk) -> None:
        conversation, voice = self._voice_turns(command)
        if command.inputTurnId != SERVER_VAD_TURN_ID:
            voice.check_turn(command.inputTurnId)
        try:
            audio = base64.b64decode(command.audioData, validate=True)
        except (binascii.Error, ValueError):
            raise CommandError(errors.invalid_message("audioData", "must be base64")) from None
        await voice.audio(conversation, command.inputTurnId, audio)
        self._reply("send_user_voice_chunk", command.requestId, inputTurnId=command.inputTurnId)

    async def _voice_end(self, command: m.EndUserVoiceInput) -> None:
        conversation, voice = self._voice_turns(command)
        received = conversation.services.monotonic()
        voice.check_turn(command.inputTurnId)
        conversation = self._active(command, Command.VOICE_END)
        await voice.end(conversation, command.inputTurnId, received)
        self._reply("end_user_voice_input", command.requestId, inputTurnId=command.inputTurnId)

    def open_voice(self, conversation: Conversation, output_turn_id: str) -> TurnVoice | None:
        """Speech for one AI turn, when this session hears voice (the ConversationSink side)."""
        speech = self._service.speech
        if not self._generate_voice or speech is None or self._closed:
            return None
        try:
            stage = conversation.project.stages.get(conversation.stage_id)
            agent_id = conversation.record.agent_id or (stage.agent_id if stage else None)
            tts, voice = speech.tts_for(conversation.project, agent_id)
        except (ProviderError, ValueError) as exc:  # the answer still streams as text
            log.warning("conversation %s: no speech synthesis: %s", conversation.id, exc)
            return None
        return TurnVoice(
            tts,
            voice,
            audio_format=self._settings.receiveAudioFormat,
            send=self._send_voice,
            conversation_id=conversation.id,
            output_turn_id=output_turn_id,
            monotonic=conversation.services.monotonic,
        )

    def _send_voice(self, chunk: VoiceChunk) -> None:
        if not self._closed:
            self._channel.send_voice(chunk)

    async def _go_to_stage(self, command: m.GoToStage) -> None:
        conversation = self._active(command, Command.GO_TO_STAGE)
        if command.stageId not in conversation.project.stages:
            raise CommandError(errors.STAGE_NOT_FOUND)
        conversation.interrupt()
        switched: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done = conversation.submit(
            lambda: conversation.actions.go_to_stage(command.stageId, switched)
        )

        async def wait() -> dict[str, Any]:
            await asyncio.wait({switched, done}, return_when=asyncio.FIRST_COMPLETED)
            return {}

        self._later("go_to_stage", command.requestId, wait())

    def _check_stage(self, conversation: Conversation, stage_id: str) -> None:
        if stage_id != conversation.stage_id:
            raise CommandError(errors.stage_mismatch(conversation.stage_id, stage_id))

    async def _set_var(self, command: m.SetVar) -> None:
        conversation = self._active(command, Command.SET_VAR)
        self._check_stage(conversation, command.stageId)
        try:
            changed = conversation.actions.apply_variables(
                {command.variableName: command.variableValue}
            )
        except VariableTypeError as exc:
            raise CommandError(errors.invalid_message("variableValue", str(exc))) from None
        self._reply("set_var", command.requestId)
        if changed:
            conversation.submit(lambda: conversation.actions.run_watches(changed))

    async def _get_var(self, command: m.GetVar) -> None:
        conversation = self._active(command, Command.GET_VAR)
        self._check_stage(conversation, command.stageId)
        value = conversation.stage_variables.get(command.variableName)
        self._reply(
            "get_var",
            command.requestId,
            variableName=command.variableName,
            variableValue=value,
        )

    async def _get_all_vars(self, command: m.GetAllVars) -> None:
        conversation = self._active(command, Command.GET_ALL_VARS)
        self._check_stage(conversation, command.stageId)
        self._reply("get_all_vars", command.requestId, variables=dict(conversation.stage_variables))

    async def _run_action(self, command: m.RunAction) -> None:
        conversation = self._active(command, Command.RUN_ACTION)
        action = conversation.project.find_action(conversation.stage_id, command.actionName)
        if action is None:
            raise CommandError(errors.ACTION_NOT_FOUND)
        parameters = dict(command.parameters)

        async def run() -> dict[str, Any]:
            _, parts = await conversation.submit(
                lambda: conversation.actions.run(action, parameters, ActionMatch(action)),
                default=(False, []),
            )
            return {"result": parts}

        self._later("run_action", command.requestId, run())

    async def _call_tool(self, command: m.CallTool) -> None:
        conversation = self._active(command, Command.CALL_TOOL)
        tool = conversation.project.tools.get(command.toolId)
        if tool is None:
            raise CommandError(errors.TOOL_NOT_FOUND)
        parameters = dict(command.parameters)

        async def call() -> dict[str, Any]:
            result = await conversation.actions.call_tool(tool, parameters)
            return {"result": content_parts(result)}

        self._later("call_tool", command.requestId, call())

    async def _abort_generation(self, command: m.AbortAiGeneration) -> None:
        conversation = self._active(command, Command.ABORT_GENERATION)
        conversation.interrupt()
        self._reply("abort_ai_generation", command.requestId)


def _effective(asked: bool | None, key: ApiKey, feature: str) -> bool:
    return key.permits(feature) if asked is None else asked
