"""One running conversation: the owner of its state, its work queue and its session link.

Each conversation owns one worker task that runs its jobs (user input, stage jumps, actions)
one at a time, so a conversation never races with itself. An AI turn streams inside the job
that produced it. Barge-in (new input, ``abort_ai_generation``, a client stage jump) cancels
the job that is speaking: the turn is closed with ``abort_ai_generation_output`` and the text
produced so far, which is all the history keeps; effects after the interrupted answer are
skipped, since the user has moved on.

:class:`Conversation` is the only place a state moves (along the table in :mod:`.states`).
Its parts get narrow views instead of a pointer back to it: the :class:`ActionRunner` an
:class:`~.actions.ActionHost`, the :class:`~.turns.AiTurns` and :class:`~.journal.Journal`
a ``publish`` callable; voice input sees it as
:class:`~hubbub.conversation.voice.input_turn.VoiceTurns`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.project.schema import Action, Tool
from hubbub.conversation.protocol import ids
from hubbub.conversation.protocol.errors import CommandError
from hubbub.conversation.protocol.pushes import Push
from hubbub.conversation.runtime.actions import ActionRunner
from hubbub.conversation.runtime.data import ConversationData
from hubbub.conversation.runtime.journal import Journal
from hubbub.conversation.runtime.responder import ActionMatch
from hubbub.conversation.runtime.services import EngineServices
from hubbub.conversation.runtime.states import (
    TERMINAL,
    Command,
    Event,
    State,
    accepts,
    next_state,
)
from hubbub.conversation.runtime.store import ConversationRecord, StoredConversation
from hubbub.conversation.runtime.tools import content_parts
from hubbub.conversation.runtime.turns import AiTurns, TurnSpeech
from hubbub.conversation.voice.providers.base import ChatMessage

log = logging.getLogger(__name__)


class ConversationSink(Protocol):
    """Where a conversation's pushes go (the attached session); filtering is the sink's job."""

    def deliver(self, push: Push) -> None: ...

    def open_voice(
        self, conversation_id: str, output_turn_id: str, agent_id: str | None
    ) -> TurnSpeech | None:
        """The turn's voice when the session hears speech (generateVoice and
        receiveVoiceOutput), else None."""
        ...


@dataclass(slots=True)
class _Job:
    run: Callable[[], Awaitable[Any]]
    result: asyncio.Future[Any]
    default: Any = None  # the result if the job is interrupted


class Conversation:
    def __init__(
        self,
        services: EngineServices,
        project: LoadedProject,
        record: ConversationRecord,
        *,
        state: State,
        variables: dict[str, dict[str, Any]],
        history: list[ChatMessage],
        next_seq: int = 0,
        on_terminal: Callable[[Conversation], None] | None = None,
    ) -> None:
        self._services = services
        self._state = state
        self._data = ConversationData(project, record, variables, history)
        self._sink: ConversationSink | None = None
        bus = services.bus
        self._bus = bus if bus is not None and bus.carries(project.id) else None
        self._journal = Journal(
            services, self._data, publish=self.push, status=self._status, next_seq=next_seq
        )
        self._turns = AiTurns(
            self._data,
            self._journal,
            publish=self.push,
            open_voice=self._open_voice,
            monotonic=services.monotonic,
        )
        self.actions = ActionRunner(self, self._data, self._journal, services)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._current: asyncio.Task[Any] | None = None
        self._on_terminal = on_terminal
        self._idle_timer: asyncio.TimerHandle | None = None
        self._worker = asyncio.create_task(self._work(), name=f"conversation {record.id}")
        self.touch()

    @classmethod
    def restore(
        cls,
        services: EngineServices,
        project: LoadedProject,
        stored: StoredConversation,
        on_terminal: Callable[[Conversation], None] | None = None,
    ) -> Conversation:
        history = [
            ChatMessage(event.data["role"], str(event.data.get("text", "")))
            for event in stored.events
            if event.event_type == "message" and event.data.get("role") in ("user", "assistant")
        ]
        next_seq = stored.events[-1].seq + 1 if stored.events else 0
        conversation = cls(
            services,
            project,
            stored.record,
            state=State.AWAITING_USER_INPUT,
            variables=stored.variables,
            history=history,
            next_seq=next_seq,
            on_terminal=on_terminal,
        )
        # Templates see each tool's last result; the tool_call events hold them.
        for event in stored.events:
            if event.event_type == "tool_call":
                conversation.tool_results[event.data["toolId"]] = event.data.get("result")
        return conversation

    # --- what it holds ---------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._data.id

    @property
    def project(self) -> LoadedProject:
        return self._data.project

    @property
    def stage_id(self) -> str:
        return self._data.stage_id

    @property
    def variables(self) -> dict[str, dict[str, Any]]:
        return self._data.variables

    @property
    def stage_variables(self) -> dict[str, Any]:
        return self._data.stage_variables

    @property
    def history(self) -> list[ChatMessage]:
        return self._data.history

    @property
    def tool_results(self) -> dict[str, Any]:
        return self._data.tool_results

    # --- state: the only place it moves ----------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def terminal(self) -> bool:
        return self._state in TERMINAL

    def accepts(self, command: Command) -> bool:
        return accepts(self._state, command)

    def _move(self, event: Event) -> None:
        self._state = next_state(self._state, event)

    def _status(self) -> str:
        return str(self._state)

    # ActionHost: what actions ask for.

    @property
    def awaiting_answer(self) -> bool:
        return self._state is State.PROCESSING_USER_INPUT

    def await_input(self) -> None:
        if self._state is State.INITIALIZED:
            self._move(Event.AWAIT_INPUT)

    def input_handled(self) -> None:
        if self._state is State.PROCESSING_USER_INPUT:
            self._move(Event.INPUT_HANDLED)

    def finish(self, reason: str) -> None:
        self.terminate(Event.FINISH, "conversation_end", reason)

    # --- the session it talks to -----------------------------------------------------------

    def attach(self, sink: ConversationSink) -> None:
        """A session takes the conversation over (a resume may take it from another)."""
        self._sink = sink

    def attached_to(self, sink: ConversationSink) -> bool:
        return self._sink is sink

    def detach(self, sink: ConversationSink) -> None:
        """The session is gone: stop talking (nobody hears it); the conversation stays."""
        if self._sink is sink:
            self.interrupt()
            self._sink = None

    def push(self, push: Push) -> None:
        if self._sink is not None:
            self._sink.deliver(push)
        if self._bus is not None:
            self._bus.publish(self.project.id, push)

    def _open_voice(self, output_turn_id: str) -> TurnSpeech | None:
        if self._sink is None:
            return None
        return self._sink.open_voice(self.id, output_turn_id, self._data.agent_id)

    def begin(self, initial_variables: dict[str, Any]) -> None:
        """Run the start (variables, lifecycle actions, the starting stage's enter behaviour).
        A start that runs nothing awaits input at once, so input sent right after the start
        reply is taken."""
        if self.actions.enters_silently():
            self._move(Event.AWAIT_INPUT)
        variables = dict(initial_variables)
        self.submit(lambda: self.actions.start(variables))

    def take_over(self, sink: ConversationSink) -> State:
        """A resume: ``sink`` takes the conversation over; a voice turn left open by the
        session it came from is dropped. Returns the state it was in."""
        previous = self._state
        self.attach(sink)
        self.cancel_voice()
        if self._state in (State.INITIALIZED, State.AWAITING_USER_INPUT):
            self._move(Event.AWAIT_INPUT)
        self.touch()
        return previous

    def resumed(self, previous: State) -> None:
        """Record the resume (after the session has replied to it)."""
        self._journal.event(
            "conversation_resume", {"stageId": self.stage_id, "previousStatus": previous}
        )

    # --- persistence -----------------------------------------------------------------------

    def persist(self) -> None:
        self._journal.persist()

    # --- idle timeout ----------------------------------------------------------------------

    def touch(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        timeout_s = self.project.project.conversation_timeout_s
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(timeout_s, self._on_idle)

    def _on_idle(self) -> None:
        self._idle_timer = None
        self.terminate_idle()

    def terminate_idle(self) -> None:
        if not self.terminal:
            self.interrupt()
            self.terminate(Event.ABORT, "conversation_aborted", "idle timeout")

    # --- the worker ------------------------------------------------------------------------

    def submit(self, run: Callable[[], Awaitable[Any]], default: Any = None) -> asyncio.Future[Any]:
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(run, result, default))
        return result

    async def _work(self) -> None:
        while not self.terminal:
            job = await self._queue.get()
            if self.terminal:
                self._settle(job, None)
                break
            task = asyncio.ensure_future(job.run())
            self._current = task
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                task.cancel()
                raise
            finally:
                self._current = None
            if task.cancelled():
                self._settle(job, job.default)
            elif (error := task.exception()) is not None:
                if not job.result.done():
                    job.result.set_exception(error)
                    job.result.exception()  # whoever awaits it sees it; nobody must
                if not isinstance(error, CommandError):
                    log.error("conversation %s failed", self.id, exc_info=error)
                    self.terminate(Event.FAIL, "conversation_failed", "internal error")
            else:
                self._settle(job, task.result())
            if not self.terminal:
                self.persist()
                self.touch()
        while not self._queue.empty():
            self._settle(self._queue.get_nowait(), None)

    @staticmethod
    def _settle(job: _Job, value: Any) -> None:
        if not job.result.done():
            job.result.set_result(value)

    async def stop(self) -> None:
        """Server shutdown: stop working, keep the conversation resumable."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)

    def terminate(self, event: Event, event_type: str, reason: str) -> None:
        if self.terminal:
            return
        self._move(event)
        self._journal.event(event_type, {"reason": reason, "stageId": self.stage_id})
        self.persist()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        current = self._current
        if current is not None and current is not asyncio.current_task():
            current.cancel()
        self._queue.put_nowait(_Job(_noop, asyncio.get_running_loop().create_future()))
        if self._on_terminal is not None:
            self._on_terminal(self)

    # --- AI turns --------------------------------------------------------------------------

    @property
    def speaking(self) -> bool:
        return self._turns.open

    async def speak(
        self, stream: AsyncIterator[str], *, origin: float | None = None, llm: bool = False
    ) -> str:
        """Stream one AI turn to the client; returns its full text."""
        self._move(Event.START_RESPONSE)
        full_text = await self._turns.speak(stream, origin=origin, llm=llm)
        self._move(Event.RESPONSE_DONE)
        return full_text

    def interrupt(self) -> bool:
        """Barge-in: stop the answer being spoken, keeping only what was produced."""
        if not self._turns.open or self._state is not State.GENERATING_RESPONSE:
            return False
        if self._current is not None:
            self._current.cancel()
        self._turns.abort()
        self._move(Event.RESPONSE_DONE)
        return True

    # --- user input ------------------------------------------------------------------------

    def submit_text(self, text: str) -> str:
        """Accept text input (the caller checked the state); returns the input turn id."""
        received = self._services.monotonic()
        self.interrupt()
        self._move(Event.USER_TEXT)
        turn_id = ids.new_id("tinp_")
        self.touch()
        self.submit(lambda: self.actions.handle_user_text(turn_id, text, received))
        return turn_id

    # VoiceTurns: what voice input asks for.

    @property
    def can_start_voice(self) -> bool:
        return accepts(self._state, Command.VOICE_START)

    @property
    def receiving_voice(self) -> bool:
        return self._state is State.RECEIVING_USER_VOICE

    def start_voice(self) -> str:
        """A voice input turn opens (the caller checked the state); barge-in included."""
        self.interrupt()
        self._move(Event.VOICE_START)
        self.touch()
        return ids.new_id("tinp_")

    def cancel_voice(self) -> None:
        """An open voice turn is abandoned (its session closed): wait for input again."""
        if self._state is State.RECEIVING_USER_VOICE:
            self._move(Event.VOICE_CANCEL)
            self.persist()

    def end_voice(
        self, turn_id: str, transcribe: Callable[[], Awaitable[tuple[str, float]]], received: float
    ) -> None:
        """The voice turn's audio is complete: the worker transcribes it (``transcribe`` gives
        the final text and the ASR time in ms), then handles it like text input."""
        self._move(Event.VOICE_END)
        self.touch()

        async def run() -> None:
            text, asr_ms = await transcribe()
            await self.actions.handle_user_text(turn_id, text, received, asr_ms=asr_ms)

        self.submit(run)

    # --- client commands (the session checked that the state accepts them) -----------------

    async def end(self, reason: str) -> None:
        """End after the work queued before (``__conversation_end`` first); the caller has
        interrupted the answer being spoken, if any."""
        await self.submit(lambda: self.actions.end(reason))

    def go_to_stage(self, stage_id: str) -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
        """Jump (a barge-in): returns (switched, done); ``switched`` resolves once the stage
        has changed, ``done`` once its enter behaviour has run too (or was cut short)."""
        self.interrupt()
        switched: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done = self.submit(lambda: self.actions.go_to_stage(stage_id, switched))
        return switched, done

    async def run_action(self, action: Action, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """Run ``action`` in turn with other work; returns its tool results as content parts."""
        outcome: tuple[bool, list[dict[str, Any]]] = await self.submit(
            lambda: self.actions.run(action, parameters, ActionMatch(action)),
            default=(False, []),
        )
        return outcome[1]

    async def call_tool(self, tool: Tool, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """Call ``tool`` at once (not queued: a tool call does not wait for an answer)."""
        return content_parts(await self.actions.call_tool(tool, parameters))

    # --- a backend steps in (the conversation bus's REST commands) --------------------------

    @property
    def can_say(self) -> bool:
        """The agent may start a turn unasked: not while the user's voice turn is open."""
        return not self.terminal and self._state is not State.RECEIVING_USER_VOICE

    def say(self, text: str) -> asyncio.Future[Any]:
        """The agent says ``text`` now (a barge-in), as one prescripted AI turn, voiced when
        the session hears speech. Skipped if a voice turn opened before it could start."""
        self.interrupt()
        self.touch()

        async def run() -> None:
            if self.can_say:
                await self.actions.speak_text(text)

        return self.submit(run)

    def request_end(self, reason: str) -> asyncio.Future[Any]:
        """End after the work queued before, the answer being spoken interrupted."""
        self.interrupt()
        return self.submit(lambda: self.actions.end(reason))

    def set_variable(self, name: str, value: Any) -> None:
        """Set a variable of the current stage now (raises VariableTypeError); watches run
        in turn with other work."""
        changed = self.actions.apply_variables({name: value})
        if changed:
            self.submit(lambda: self.actions.run_watches(changed))


async def _noop() -> None:
    return None
