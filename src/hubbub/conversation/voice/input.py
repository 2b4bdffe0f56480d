"""Speech in: one session's voice input turns, client-driven or detected by server VAD.

Client-driven: ``start_user_voice_input`` opens a turn (and interrupts the agent if it is
speaking), audio arrives for that ``inputTurnId`` (base64 chunks on the WebSocket, binary
frames on WebRTC), ``end_user_voice_input`` closes it. Server-VAD mode (``asrConfig.serverVad``):
audio streams continuously under the empty turn id; Silero VAD opens a turn when speech starts
(``user_speaking_started``; a barge-in if the agent speaks) and closes it after
``autoEndSilenceDurationMs`` of silence.

Audio is converted from the session's sendAudioFormat to engine PCM and fed to the project's
ASR provider as it arrives (interim ``user_transcribed_chunk`` pushes). The final transcript is
taken by the conversation's worker and then handled exactly like text input.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.protocol import errors, ids
from hubbub.conversation.protocol.errors import CommandError
from hubbub.conversation.protocol.pushes import Push, UserSpeakingStarted, UserTranscribedChunk
from hubbub.conversation.voice.audio import ClientToEngine
from hubbub.conversation.voice.providers.base import (
    ENGINE_SAMPLE_RATE,
    AsrStream,
    ProviderError,
    VadStream,
)
from hubbub.conversation.voice.speech import SpeechStack, stage_hints

log = logging.getLogger(__name__)

# Audio kept from before the VAD's speech start (which fires ~100 ms into speech), so the
# recogniser hears the first syllable too.
PRE_ROLL_MS: Final = 400
SERVER_VAD_TURN_ID: Final = ""  # the turn id of continuous server-VAD audio

# The final transcript and the ASR time (ms) of a voice turn.
Transcriber = Callable[[], Awaitable[tuple[str, float]]]


class VoiceTurns(Protocol):
    """What voice input needs from the conversation it feeds (the runtime's Conversation),
    which owns the conversation's state: voice input asks it to open and close turns."""

    @property
    def id(self) -> str: ...

    @property
    def stage_id(self) -> str: ...

    @property
    def can_start_voice(self) -> bool:
        """Its state accepts a new voice input turn."""
        ...

    @property
    def receiving_voice(self) -> bool:
        """A voice input turn is open."""
        ...

    def start_voice(self) -> str:
        """Open a voice input turn (a barge-in if the agent speaks); returns its id."""
        ...

    def end_voice(self, turn_id: str, transcribe: Transcriber, received: float) -> None:
        """The turn's audio is complete: transcribe it, then handle it like text input."""

    def cancel_voice(self) -> None:
        """The open voice turn is abandoned."""

    def push(self, push: Push) -> None: ...


@dataclass(slots=True)
class _InputTurn:
    id: str
    conversation: VoiceTurns
    asr: AsrStream | None
    converter: ClientToEngine
    by_vad: bool
    ordinal: int = 0
    last_text: str = ""
    failed: bool = False
    pcm_bytes: int = 0


@dataclass(slots=True)
class _PreRoll:
    limit_bytes: int
    chunks: collections.deque[bytes] = field(default_factory=collections.deque)
    size: int = 0

    def add(self, pcm: bytes) -> None:
        self.chunks.append(pcm)
        self.size += len(pcm)
        while self.size - len(self.chunks[0]) >= self.limit_bytes:
            self.size -= len(self.chunks.popleft())

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        return data


class VoiceInput:
    def __init__(
        self,
        speech: SpeechStack,
        project: LoadedProject,
        audio_format: str,
        monotonic: Callable[[], float],
    ) -> None:
        self._speech = speech
        self._monotonic = monotonic
        self._project = project
        self._format = audio_format
        self._config = project.project.asr_config
        self._turn: _InputTurn | None = None
        self._vad: VadStream | None = None
        self._vad_converter: ClientToEngine | None = None
        self._pre_roll = _PreRoll(ENGINE_SAMPLE_RATE * 2 * PRE_ROLL_MS // 1000)
        if self._config.server_vad:
            silence = self._config.auto_end_silence_duration_ms
            self._vad = speech.vad().open_stream(silence_ms=silence)
            self._vad_converter = ClientToEngine(audio_format)

    @property
    def open_turn_id(self) -> str | None:
        return self._turn.id if self._turn is not None else None

    # --- client-driven turns ---------------------------------------------------------------

    async def start(self, conversation: VoiceTurns) -> str:
        if self._turn is not None and self._turn.conversation is conversation:
            await self._drop_turn()
        turn_id = conversation.start_voice()
        await self._open(conversation, turn_id, by_vad=False)
        return turn_id

    def check_turn(self, turn_id: str) -> None:
        turn = self._turn
        if turn is not None and turn.id != turn_id:
            raise CommandError(errors.input_turn_mismatch(turn.id, turn_id))

    async def audio(self, conversation: VoiceTurns | None, turn_id: str, data: bytes) -> None:
        """Audio from the client; for no open turn (unknown or finished) it is dropped."""
        if conversation is None:
            return
        if self._vad is not None and (
            turn_id == SERVER_VAD_TURN_ID or (self._turn is not None and self._turn.by_vad)
        ):
            await self._vad_audio(conversation, data)
            return
        turn = self._turn
        if turn is None or turn.id != turn_id or turn.conversation is not conversation:
            return
        await self._feed(turn, turn.converter.convert(data))

    async def end(self, conversation: VoiceTurns, turn_id: str, received: float) -> None:
        turn = self._turn
        if turn is None:
            raise CommandError(errors.input_turn_mismatch("none", turn_id))
        self.check_turn(turn_id)
        self._turn = None
        tail = turn.converter.flush()
        if tail:
            await self._feed(turn, tail)
        monotonic = self._monotonic
        placeholder = self._config.unintelligible_placeholder

        async def transcribe() -> tuple[str, float]:
            started = monotonic()
            text = ""
            if turn.asr is not None and not turn.failed:
                try:
                    text = (await turn.asr.finish()).text.strip()
                except ProviderError as exc:
                    log.warning("input turn %s: ASR failed: %s", turn.id, exc)
            asr_ms = round((monotonic() - started) * 1000, 3)
            self._push_transcript(turn, text, is_final=True)
            return text or placeholder, asr_ms

        conversation.end_voice(turn.id, transcribe, received)

    async def close(self) -> None:
        turn = self._turn
        await self._drop_turn()
        if turn is not None:
            turn.conversation.cancel_voice()

    # --- internals -------------------------------------------------------------------------

    async def _open(self, conversation: VoiceTurns, turn_id: str, *, by_vad: bool) -> None:
        asr = None
        try:
            asr = await self._speech.asr_for(self._project).open_stream(
                language=self._config.language,
                hints=stage_hints(self._project, conversation.stage_id),
            )
        except (ProviderError, ValueError) as exc:
            log.warning("input turn %s: cannot start ASR: %s", turn_id, exc)
        self._turn = _InputTurn(turn_id, conversation, asr, ClientToEngine(self._format), by_vad)

    async def _drop_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None and turn.asr is not None:
            await turn.asr.cancel()

    async def _feed(self, turn: _InputTurn, pcm: bytes) -> None:
        if turn.asr is None or turn.failed or not pcm:
            return
        turn.pcm_bytes += len(pcm)
        try:
            results = await turn.asr.push(pcm)
        except ProviderError as exc:
            log.warning("input turn %s: ASR failed: %s", turn.id, exc)
            turn.failed = True
            return
        for result in results:
            text = result.text.strip()
            if text and text != turn.last_text:
                turn.last_text = text
                self._push_transcript(turn, text, is_final=False)

    def _push_transcript(self, turn: _InputTurn, text: str, *, is_final: bool) -> None:
        turn.conversation.push(
            UserTranscribedChunk(
                conversation_id=turn.conversation.id,
                input_turn_id=turn.id,
                chunk_id=ids.new_id("chnk_"),
                chunk_text=text,
                ordinal=turn.ordinal,
                is_final=is_final,
            )
        )
        turn.ordinal += 1

    async def _vad_audio(self, conversation: VoiceTurns, data: bytes) -> None:
        assert self._vad is not None and self._vad_converter is not None
        pcm = self._vad_converter.convert(data)
        if not pcm:
            return
        self._pre_roll.add(pcm)
        fed = False
        for boundary in self._vad.process(pcm):
            if boundary == "speech_start" and self._turn is None:
                if not conversation.can_start_voice:
                    continue
                turn_id = conversation.start_voice()
                conversation.push(
                    UserSpeakingStarted(conversation_id=conversation.id, input_turn_id=turn_id)
                )
                await self._open(conversation, turn_id, by_vad=True)
                assert self._turn is not None
                await self._feed(self._turn, self._pre_roll.take())
                fed = True
            elif boundary == "speech_end" and self._turn is not None and self._turn.by_vad:
                turn = self._turn
                if not conversation.receiving_voice:
                    await self._drop_turn()  # the conversation moved on (ended, resumed elsewhere)
                    continue
                if not fed:
                    await self._feed(turn, pcm)
                    fed = True
                await self.end(conversation, turn.id, self._monotonic())
        if not fed and self._turn is not None and self._turn.by_vad:
            await self._feed(self._turn, pcm)
