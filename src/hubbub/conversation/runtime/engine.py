"""One running conversation: its state machine, its work queue and its AI turns.

Each conversation owns one worker task that runs its jobs (user input, stage jumps, actions)
one at a time, so a conversation never races with itself. An AI turn streams inside the job
that produced it. Barge-in (new input, ``abort_ai_generation``, a client stage jump) cancels
the job that is speaking: the turn is closed with ``abort_ai_generation_output`` and the text
produced so far, which is all the history keeps; effects after the interrupted answer are
skipped, since the user has moved on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.protocol import ids
from hubbub.conversation.protocol.errors import CommandError
from hubbub.conversation.runtime.actions import ActionRunner
from hubbub.conversation.runtime.context import EngineServices
from hubbub.conversation.runtime.states import TERMINAL, Event, State, next_state
from hubbub.conversation.runtime.store import ConversationRecord, EventRecord, StoredConversation
from hubbub.conversation.voice.output import TurnVoice
from hubbub.conversation.voice.providers.base import ChatMessage, ProviderError

log = logging.getLogger(__name__)


class ConversationSink(Protocol):
    """Where a conversation's pushes go (the attached session); filtering is the sink's job."""

    def deliver(self, message: dict[str, Any]) -> None: ...

    def open_voice(self, conversation: Conversation, output_turn_id: str) -> TurnVoice | None:
        """The turn's voice when the session hears speech (generateVoice and
        receiveVoiceOutput), else None."""
        ...


@dataclass(slots=True)
class _Turn:
    output_turn_id: str
    origin: float  # monotonic: when the input that caused it arrived, or when it started
    started: float
    parts: list[str] = field(default_factory=list)
    first_token_at: float | None = None
    llm: bool = False
    voice: TurnVoice | None = None


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
        self.services = services
        self.project = project
        self.record = record
        self.state = state
        self.variables = variables
        self.history = history
        self.tool_results: dict[str, Any] = {}
        self._seq = next_seq
        self._sink: ConversationSink | None = None
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._current: asyncio.Task[Any] | None = None
        self._turn: _Turn | None = None
        self._on_terminal = on_terminal
        self._idle_timer: asyncio.TimerHandle | None = None
        self.actions = ActionRunner(self)
        self._worker = asyncio.create_task(self._work(), name=f"conversation {record.id}")
        self.touch()

    # --- construction ----------------------------------------------------------------------

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

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def stage_id(self) -> str:
        return self.record.stage_id

    @property
    def stage_variables(self) -> dict[str, Any]:
        return self.variables.setdefault(self.record.stage_id, {})

    # --- state, pushes, events -------------------------------------------------------------

    def move(self, event: Event) -> None:
        self.state = next_state(self.state, event)

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

    def push(self, message_type: str, **fields: Any) -> None:
        if self._sink is not None:
            self._sink.deliver({"type": message_type, "conversationId": self.id, **fields})

    def event(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        input_turn_id: str | None = None,
        output_turn_id: str | None = None,
    ) -> None:
        record = EventRecord(
            id=ids.new_id("evnt_"),
            conversation_id=self.id,
            seq=self._seq,
            event_type=event_type,
            data=data,
            input_turn_id=input_turn_id,
            output_turn_id=output_turn_id,
            created_at=self.services.clock(),
        )
        if event_type == "message" and self.services.on_message_event is not None:
            self.services.on_message_event(data)
        self._seq += 1
        self.services.store.append_event(record)
        extra: dict[str, Any] = {}
        if input_turn_id is not None:
            extra["inputTurnId"] = input_turn_id
        if output_turn_id is not None:
            extra["outputTurnId"] = output_turn_id
        self.push("conversation_event", eventType=event_type, eventData=data, **extra)

    def persist(self) -> None:
        self.record.status = str(self.state)
        self.record.updated_at = self.services.clock()
        self.services.store.save_conversation(self.record)

    def save_stage_variables(self, stage_id: str | None = None) -> None:
        stage = stage_id or self.stage_id
        self.services.store.save_variables(self.id, stage, dict(self.variables.get(stage, {})))

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
        if self.state not in TERMINAL:
            self.interrupt()
            self.terminate(Event.ABORT, "conversation_aborted", "idle timeout")

    # --- the worker ------------------------------------------------------------------------

    def submit(self, run: Callable[[], Awaitable[Any]], default: Any = None) -> asyncio.Future[Any]:
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(run, result, default))
        return result

    async def _work(self) -> None:
        while self.state not in TERMINAL:
            job = await self._queue.get()
            if self.state in TERMINAL:
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
            if self.state not in TERMINAL:
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
        if self.state in TERMINAL:
            return
        self.move(event)
        self.event(event_type, {"reason": reason, "stageId": self.stage_id})
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
        return self._turn is not None

    async def speak(
        self, stream: AsyncIterator[str], *, origin: float | None = None, llm: bool = False
    ) -> str:
        """Stream one AI turn to the client; returns its full text."""
        now = self.services.monotonic()
        self.move(Event.START_RESPONSE)
        turn = _Turn(ids.new_id("tout_"), origin if origin is not None else now, now, llm=llm)
        self._turn = turn
        self.push(
            "start_ai_generation_output",
            outputTurnId=turn.output_turn_id,
            expectVoice=self._open_voice(turn),
        )
        ordinal = 0

        def emit(text: str) -> None:
            nonlocal ordinal
            turn.parts.append(text)
            if turn.voice is not None:
                turn.voice.feed(text)
            self.push(
                "ai_transcribed_chunk",
                outputTurnId=turn.output_turn_id,
                chunkId=ids.new_id("chnk_"),
                chunkText=text,
                ordinal=ordinal,
                isFinal=False,
            )
            ordinal += 1

        try:
            try:
                async for delta in stream:
                    if not delta:
                        continue
                    if turn.first_token_at is None:
                        turn.first_token_at = self.services.monotonic()
                    emit(delta)
            except ProviderError as exc:
                log.warning("conversation %s: LLM failed mid-answer: %s", self.id, exc)
                if not turn.parts:
                    emit(self.project.project.rule_responder.fallback_text)
            if turn.voice is not None:
                await turn.voice.finish()
        finally:
            if turn.voice is not None:
                turn.voice.cancel()  # a no-op once finished; barge-in stops speech here
            if hasattr(stream, "aclose"):
                await stream.aclose()
        full_text = "".join(turn.parts)
        self.push(
            "ai_transcribed_chunk",
            outputTurnId=turn.output_turn_id,
            chunkId=ids.new_id("chnk_"),
            chunkText="",
            ordinal=ordinal,
            isFinal=True,
        )
        self.push("end_ai_generation_output", outputTurnId=turn.output_turn_id, fullText=full_text)
        self._close_turn(turn, full_text)
        self.move(Event.RESPONSE_DONE)
        return full_text

    def _open_voice(self, turn: _Turn) -> bool:
        if self._sink is not None:
            turn.voice = self._sink.open_voice(self, turn.output_turn_id)
        return turn.voice is not None

    def _close_turn(self, turn: _Turn, text: str) -> None:
        self._turn = None
        voice = turn.voice
        if voice is not None:
            voice.cancel()
        if text:
            self.history.append(ChatMessage("assistant", text))
        end = self.services.monotonic()

        def ms(start: float, stop: float | None) -> float | None:
            return None if stop is None else round((stop - start) * 1000, 3)

        self.event(
            "message",
            {
                "role": "assistant",
                "text": text,
                "timeToFirstTokenMs": ms(turn.origin, turn.first_token_at),
                "timeToFirstAudioMs": ms(turn.origin, voice.first_audio_at) if voice else None,
                "llmDurationMs": ms(turn.started, end) if turn.llm else None,
                "ttsDurationMs": round(voice.tts_seconds * 1000, 3) if voice else None,
                "totalTurnDurationMs": ms(turn.origin, end),
            },
            output_turn_id=turn.output_turn_id,
        )

    def interrupt(self) -> bool:
        """Barge-in: stop the answer being spoken, keeping only what was produced."""
        turn = self._turn
        if turn is None or self.state is not State.GENERATING_RESPONSE:
            return False
        if self._current is not None:
            self._current.cancel()
        text = "".join(turn.parts)
        self.push(
            "abort_ai_generation_output", outputTurnId=turn.output_turn_id, accumulatedText=text
        )
        self._close_turn(turn, text)
        self.move(Event.RESPONSE_DONE)
        return True

    # --- user input ------------------------------------------------------------------------

    def submit_text(self, text: str) -> str:
        """Accept text input (the caller checked the state); returns the input turn id."""
        received = self.services.monotonic()
        self.interrupt()
        self.move(Event.USER_TEXT)
        turn_id = ids.new_id("tinp_")
        self.touch()
        self.submit(lambda: self.actions.handle_user_text(turn_id, text, received))
        return turn_id

    def start_voice(self) -> str:
        """A voice input turn opens (the caller checked the state); barge-in included."""
        self.interrupt()
        self.move(Event.VOICE_START)
        self.touch()
        return ids.new_id("tinp_")

    def cancel_voice(self) -> None:
        """An open voice turn is abandoned (its session closed): wait for input again."""
        if self.state is State.RECEIVING_USER_VOICE:
            self.move(Event.VOICE_CANCEL)
            self.persist()

    def end_voice(
        self, turn_id: str, transcribe: Callable[[], Awaitable[tuple[str, float]]], received: float
    ) -> None:
        """The voice turn's audio is complete: the worker transcribes it (``transcribe`` gives
        the final text and the ASR time in ms), then handles it like text input."""
        self.move(Event.VOICE_END)
        self.touch()

        async def run() -> None:
            text, asr_ms = await transcribe()
            await self.actions.handle_user_text(turn_id, text, received, asr_ms=asr_ms)

        self.submit(run)


async def _noop() -> None:
    return None
