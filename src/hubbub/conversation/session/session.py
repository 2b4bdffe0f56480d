"""One client session: authentication, session settings, and the commands of spec sections
2-3 applied to the session's conversation. Transport-independent: a transport feeds
:meth:`Session.handle_message` and provides the :class:`ClientChannel` it writes to.

Commands that wait for the conversation's worker (stage jumps, actions, the end) reply from a
small task, so the session keeps reading: a barge-in must get through while the agent works.
What the session needs from the server is a :class:`SessionServices` (the conversation
service); what it sends goes through its :class:`~.output.SessionOutput`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hubbub.conversation.protocol import commands as m
from hubbub.conversation.protocol import errors
from hubbub.conversation.protocol import pushes as p
from hubbub.conversation.protocol.errors import CommandError
from hubbub.conversation.runtime.engine import Conversation
from hubbub.conversation.runtime.scope import valid_timezone
from hubbub.conversation.runtime.states import INPUT_COMMANDS, Command
from hubbub.conversation.runtime.variables import VariableTypeError
from hubbub.conversation.session.auth import Access, grant
from hubbub.conversation.session.channel import (
    AUTH_RATE_LIMITED,
    AUTH_TIMEOUT,
    OVER_MESSAGE_RATE,
    ClientChannel,
    CloseReason,
    SessionHandler,
)
from hubbub.conversation.session.limits import MessageRate
from hubbub.conversation.session.output import SessionOutput
from hubbub.conversation.session.session_services import SessionServices
from hubbub.conversation.voice.input import SERVER_VAD_TURN_ID, VoiceInput
from hubbub.conversation.voice.output import TurnVoice
from hubbub.conversation.voice.providers.base import ProviderError

log = logging.getLogger(__name__)


class Session(SessionHandler):
    def __init__(self, services: SessionServices, channel: ClientChannel, session_id: str):
        self._services = services
        self._channel = channel
        self.id = session_id
        self._out = SessionOutput(channel, session_id)
        self._access: Access | None = None
        self._conversation: Conversation | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._voice_input: VoiceInput | None = None
        limits = services.session_limits
        self._limits = limits
        self._rate = MessageRate(limits, services.monotonic())
        self._closing = False
        self._auth_deadline: asyncio.TimerHandle | None = None
        if limits.auth_timeout_s > 0:
            self._auth_deadline = asyncio.get_running_loop().call_later(
                limits.auth_timeout_s, self._auth_timed_out
            )
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

    def deliver(self, push: p.Push) -> None:
        """A push from the conversation (the :class:`ConversationSink` side)."""
        self._out.push(push)

    def _reply(self, request_id: str | None, reply: p.Reply) -> None:
        conversation = self._conversation
        self._out.reply(reply, request_id, conversation.id if conversation else None)

    def _later(self, command: str, request_id: str | None, work: Awaitable[p.Reply]) -> None:
        """Reply when ``work`` is done, without holding up the session's reading."""

        async def finish() -> None:
            try:
                reply = await work
            except CommandError as exc:
                self._out.fail(command, request_id, exc.message)
            except Exception:  # logged by the conversation that failed
                self._out.fail(command, request_id, errors.INTERNAL_ERROR)
            else:
                self._reply(request_id, reply)

        task = asyncio.create_task(finish())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # --- input -----------------------------------------------------------------------------

    async def handle_message(self, payload: str | bytes) -> None:
        if self._closing:
            return  # the connection is being closed: nothing more is handled
        if not self._rate.allow(len(payload), self._services.monotonic()):
            self._out.transport_error(errors.MESSAGE_RATE_EXCEEDED, None)
            self._close(OVER_MESSAGE_RATE)
            return
        try:
            envelope = m.decode_envelope(payload)
            if envelope.type == "auth":
                await self._auth(envelope)
                return
            if self._access is None:
                self._out.transport_error(errors.AUTHENTICATION_REQUIRED, envelope.request_id)
                return
            feature = m.FEATURE_OF[envelope.type]
            if not self._access.key.permits(feature):
                self._out.transport_error(
                    errors.feature_not_permitted(feature), envelope.request_id
                )
                return
            command = m.decode_command(envelope)
        except m.DecodeFailure as failure:
            self._out.transport_error(failure.message, failure.request_id)
            return
        if command.session_id is not None and command.session_id != self.id:
            self._out.transport_error(errors.SESSION_ID_MISMATCH, envelope.request_id)
            return
        try:
            await self._handlers[envelope.type](command)
        except CommandError as exc:
            self._out.fail(envelope.type, envelope.request_id, exc.message)
        except Exception:  # a bug: the client gets a plain refusal, the log gets the details
            log.exception("session %s: %s failed", self.id, envelope.type)
            self._out.fail(envelope.type, envelope.request_id, errors.INTERNAL_ERROR)

    async def handle_audio(self, input_turn_id: str, audio: bytes) -> None:
        """Audio for no open input turn is dropped (spec 5); so is audio before auth."""
        if self._voice_input is not None and self._has_live_conversation():
            await self._voice_input.audio(self._conversation, input_turn_id, audio)

    def _close(self, why: CloseReason) -> None:
        self._closing = True
        self._cancel_auth_deadline()
        self._channel.close(why)

    def _auth_timed_out(self) -> None:
        self._auth_deadline = None
        if self._access is None and not self._closing and not self._out.closed:
            self._out.transport_error(errors.AUTHENTICATION_TIMEOUT, None)
            self._close(AUTH_TIMEOUT)

    def _cancel_auth_deadline(self) -> None:
        if self._auth_deadline is not None:
            self._auth_deadline.cancel()
            self._auth_deadline = None

    def going_away(self) -> None:
        if self._has_live_conversation() and self._conversation is not None:
            self._conversation.interrupt()  # the client gets the turn's abort with its text
        self._closing = True

    async def closed(self) -> None:
        self._closing = True
        self._cancel_auth_deadline()
        self._out.closed = True
        if self._voice_input is not None:
            await self._voice_input.close()
        for task in list(self._pending):
            task.cancel()
        if self._conversation is not None:
            self._conversation.detach(self)
            self._conversation = None

    # --- auth ------------------------------------------------------------------------------

    async def _auth(self, envelope: m.Envelope) -> None:
        ip = self._channel.client_ip
        if self._services.auth_refused(ip):
            self._out.transport_error(errors.TOO_MANY_AUTH_ATTEMPTS, envelope.request_id)
            self._close(AUTH_RATE_LIMITED)
            return
        try:
            request: m.Auth = m.decode_command(envelope)
        except m.DecodeFailure:
            self._services.auth_failed(ip)
            raise
        speech = self._services.speech
        try:
            if self._access is not None:
                raise CommandError(errors.ALREADY_AUTHENTICATED)
            access = grant(
                self._services.find_key(request.api_key),
                self._channel.kind,
                request.settings(),
                speech_available=speech is not None,
            )
        except CommandError as exc:
            if exc.message != errors.ALREADY_AUTHENTICATED:  # not a guess at a key
                self._services.auth_failed(ip)
            self._out.fail("auth", request.request_id, exc.message)
            return
        self._access = access
        self._cancel_auth_deadline()
        self._out.receive_transcripts = access.receive_transcripts
        self._out.receive_events = access.receive_events
        if access.accept_voice and speech is not None:
            self._voice_input = VoiceInput(
                speech,
                access.project,
                access.settings.send_audio_format,
                self._services.monotonic,
                hold_voice=self._out.hold_voice,
            )
        self._reply(request.request_id, p.AuthReply(project_settings=access.project_settings()))

    # --- conversation commands -------------------------------------------------------------

    def _active(self, command: m.ConversationCommand, kind: Command) -> Conversation:
        conversation = self._conversation
        if conversation is None or conversation.terminal or not conversation.attached_to(self):
            raise CommandError(errors.NO_ACTIVE_CONVERSATION)
        if command.conversation_id != conversation.id:
            raise CommandError(errors.CONVERSATION_ID_MISMATCH)
        if not conversation.accepts(kind):
            if kind in INPUT_COMMANDS:
                raise CommandError(errors.cannot_receive_input(conversation.state))
            raise CommandError(errors.NO_ACTIVE_CONVERSATION)
        return conversation

    def _release(self, conversation: Conversation) -> None:
        """An ended conversation is of no more use to this session: let go of it (and of its
        history), so that its memory is freed while the session lives on."""
        if self._conversation is conversation:
            conversation.detach(self)
            self._conversation = None

    def _has_live_conversation(self) -> bool:
        conversation = self._conversation
        return (
            conversation is not None
            and not conversation.terminal
            and conversation.attached_to(self)
        )

    def _granted(self) -> Access:
        assert self._access is not None  # guarded by the auth check in handle_message
        return self._access

    async def _start(self, command: m.StartConversation) -> None:
        project = self._granted().project
        if self._has_live_conversation():
            raise CommandError(errors.CONVERSATION_ALREADY_ACTIVE)
        stage_id = command.stage_id or project.project.starting_stage_id
        if stage_id not in project.stages:
            raise CommandError(errors.STAGE_NOT_FOUND)
        if command.agent_id is not None and command.agent_id not in project.agents:
            raise CommandError(errors.AGENT_NOT_FOUND)
        timezone = command.timezone or project.project.timezone
        if not valid_timezone(timezone):
            raise CommandError(errors.INVALID_TIMEZONE)
        max_bytes = self._limits.max_variables_bytes
        if max_bytes and m.json_size(command.stage_variables) > max_bytes:
            raise CommandError(errors.stage_variables_too_big(max_bytes))
        conversation = self._services.create(
            project,
            user_id=command.user_id,
            stage_id=stage_id,
            agent_id=command.agent_id,
            timezone=timezone,
        )
        conversation.attach(self)
        self._conversation = conversation
        self._reply(command.request_id, p.StartConversationReply())
        conversation.begin(command.stage_variables)

    async def _resume(self, command: m.ResumeConversation) -> None:
        project = self._granted().project
        current = self._conversation
        live = self._has_live_conversation() and current is not None
        if live and current is not None and current.id != command.conversation_id:
            raise CommandError(errors.CONVERSATION_ALREADY_ACTIVE)
        found = await self._services.resume(project, command.conversation_id)
        if isinstance(found, str):
            raise CommandError(found)
        self._conversation = found
        previous = found.take_over(self)
        self._reply(command.request_id, p.ResumeConversationReply())
        found.resumed(previous)

    async def _end(self, command: m.EndConversation) -> None:
        conversation = self._active(command, Command.END)
        conversation.interrupt()

        async def end() -> p.Reply:
            await conversation.end("ended by client")
            self._release(conversation)
            return p.EndConversationReply(conversation_id=conversation.id)

        self._later("end_conversation", command.request_id, end())

    async def _text_input(self, command: m.SendUserTextInput) -> None:
        conversation = self._active(command, Command.TEXT_INPUT)
        if not self._granted().settings.send_text_input:
            raise CommandError(errors.TEXT_INPUT_DISABLED)
        max_chars = self._limits.max_text_input_chars
        if max_chars and len(command.text) > max_chars:
            raise CommandError(errors.text_too_long(max_chars))
        turn_id = conversation.submit_text(command.text)
        self._reply(command.request_id, p.SendUserTextInputReply(input_turn_id=turn_id))

    # --- voice -----------------------------------------------------------------------------

    def _voice_turns(self, command: m.ConversationCommand) -> tuple[Conversation, VoiceInput]:
        conversation = self._conversation
        if conversation is None or not self._has_live_conversation():
            raise CommandError(errors.NO_ACTIVE_CONVERSATION)
        if command.conversation_id != conversation.id:
            raise CommandError(errors.CONVERSATION_ID_MISMATCH)
        if self._voice_input is None:
            raise CommandError(errors.VOICE_INPUT_DISABLED)
        return conversation, self._voice_input

    async def _voice_start(self, command: m.StartUserVoiceInput) -> None:
        _, voice = self._voice_turns(command)
        conversation = self._active(command, Command.VOICE_START)
        turn_id = await voice.start(conversation)
        self._reply(command.request_id, p.StartUserVoiceInputReply(input_turn_id=turn_id))

    async def _voice_chunk(self, command: m.SendUserVoiceChunk) -> None:
        conversation, voice = self._voice_turns(command)
        if command.input_turn_id != SERVER_VAD_TURN_ID:
            voice.check_turn(command.input_turn_id)
        try:
            audio = base64.b64decode(command.audio_data, validate=True)
        except (binascii.Error, ValueError):
            raise CommandError(errors.invalid_message("audioData", "must be base64")) from None
        await voice.audio(conversation, command.input_turn_id, audio)
        self._reply(
            command.request_id, p.SendUserVoiceChunkReply(input_turn_id=command.input_turn_id)
        )

    async def _voice_end(self, command: m.EndUserVoiceInput) -> None:
        _, voice = self._voice_turns(command)
        received = self._services.monotonic()
        voice.check_turn(command.input_turn_id)
        conversation = self._active(command, Command.VOICE_END)
        await voice.end(conversation, command.input_turn_id, received)
        self._reply(
            command.request_id, p.EndUserVoiceInputReply(input_turn_id=command.input_turn_id)
        )

    def open_voice(
        self, conversation_id: str, output_turn_id: str, agent_id: str | None
    ) -> TurnVoice | None:
        """Speech for one AI turn, when this session hears voice (the ConversationSink side)."""
        speech = self._services.speech
        access = self._access
        if access is None or not access.generate_voice or speech is None or self._out.closed:
            return None
        try:
            tts, voice = speech.tts_for(access.project, agent_id)
        except (ProviderError, ValueError) as exc:  # the answer still streams as text
            log.warning("conversation %s: no speech synthesis: %s", conversation_id, exc)
            return None
        return TurnVoice(
            tts,
            voice,
            audio_format=access.settings.receive_audio_format,
            send=self._out.voice,
            written=self._out.voice_sent,
            conversation_id=conversation_id,
            output_turn_id=output_turn_id,
            monotonic=self._services.monotonic,
        )

    # --- stages, variables, actions, tools -------------------------------------------------

    async def _go_to_stage(self, command: m.GoToStage) -> None:
        conversation = self._active(command, Command.GO_TO_STAGE)
        if command.stage_id not in conversation.project.stages:
            raise CommandError(errors.STAGE_NOT_FOUND)
        switched, done = conversation.go_to_stage(command.stage_id)

        async def wait() -> p.Reply:
            await asyncio.wait({switched, done}, return_when=asyncio.FIRST_COMPLETED)
            return p.GoToStageReply()

        self._later("go_to_stage", command.request_id, wait())

    def _check_stage(self, conversation: Conversation, stage_id: str) -> None:
        if stage_id != conversation.stage_id:
            raise CommandError(errors.stage_mismatch(conversation.stage_id, stage_id))

    async def _set_var(self, command: m.SetVar) -> None:
        conversation = self._active(command, Command.SET_VAR)
        self._check_stage(conversation, command.stage_id)
        max_bytes = self._limits.max_variables_bytes
        if max_bytes:
            after = {**conversation.stage_variables, command.variable_name: command.variable_value}
            if m.json_size(after) > max_bytes:
                raise CommandError(errors.variables_too_big(max_bytes))
        try:
            conversation.set_variable(command.variable_name, command.variable_value)
        except VariableTypeError as exc:
            raise CommandError(errors.invalid_message("variableValue", str(exc))) from None
        self._reply(command.request_id, p.SetVarReply())

    async def _get_var(self, command: m.GetVar) -> None:
        conversation = self._active(command, Command.GET_VAR)
        self._check_stage(conversation, command.stage_id)
        value = conversation.stage_variables.get(command.variable_name)
        reply = p.GetVarReply(variable_name=command.variable_name, variable_value=value)
        self._reply(command.request_id, reply)

    async def _get_all_vars(self, command: m.GetAllVars) -> None:
        conversation = self._active(command, Command.GET_ALL_VARS)
        self._check_stage(conversation, command.stage_id)
        variables = dict(conversation.stage_variables)
        self._reply(command.request_id, p.GetAllVarsReply(variables=variables))

    async def _run_action(self, command: m.RunAction) -> None:
        conversation = self._active(command, Command.RUN_ACTION)
        action = conversation.project.find_action(conversation.stage_id, command.action_name)
        if action is None:
            raise CommandError(errors.ACTION_NOT_FOUND)
        parameters = dict(command.parameters)

        async def run() -> p.Reply:
            return p.RunActionReply(result=await conversation.run_action(action, parameters))

        self._later("run_action", command.request_id, run())

    async def _call_tool(self, command: m.CallTool) -> None:
        conversation = self._active(command, Command.CALL_TOOL)
        tool = conversation.project.tools.get(command.tool_id)
        if tool is None:
            raise CommandError(errors.TOOL_NOT_FOUND)
        parameters = dict(command.parameters)

        async def call() -> p.Reply:
            return p.CallToolReply(result=await conversation.call_tool(tool, parameters))

        self._later("call_tool", command.request_id, call())

    async def _abort_generation(self, command: m.AbortAiGeneration) -> None:
        conversation = self._active(command, Command.ABORT_GENERATION)
        conversation.interrupt()
        self._reply(command.request_id, p.AbortAiGenerationReply())
