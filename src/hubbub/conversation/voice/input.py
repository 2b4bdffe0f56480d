"""Speech in: one session's voice input turns, client-driven or detected by server VAD.

Client-driven: ``start_user_voice_input`` opens a turn (and interrupts the agent if it is
speaking), audio arrives for that ``inputTurnId`` (base64 chunks on the WebSocket, binary
frames on WebRTC), ``end_user_voice_input`` closes it. Server-VAD mode (``asrConfig.serverVad``):
audio streams continuously under the empty turn id; Silero VAD opens a turn when speech starts
(``user_speaking_started``; a barge-in if the agent speaks) and closes it when the user's turn
is over: after ``autoEndSilenceDurationMs`` of silence, or sooner when the semantic end-of-turn
model hears a finished utterance. The model listens while the silence is still growing
(``END_OF_TURN_LEAD_MS`` before ``semanticSilenceMs``), so its verdict is ready when the silence
is long enough rather than ~50 ms after. Speech over the agent interrupts only if it is more than a
backchannel (see :mod:`hubbub.conversation.voice.turn_taking` for the rules and settings).

Audio is converted from the session's sendAudioFormat to engine PCM and fed to the project's
ASR provider as it arrives (interim ``user_transcribed_chunk`` pushes). The final transcript is
taken by the conversation's worker and then handled exactly like text input.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.protocol import errors, ids
from hubbub.conversation.protocol.errors import CommandError
from hubbub.conversation.protocol.pushes import UserSpeakingStarted, UserTranscribedChunk
from hubbub.conversation.voice.audio import ClientToEngine
from hubbub.conversation.voice.input_turn import InputTurn, PreRoll, VoiceTurns
from hubbub.conversation.voice.providers.base import (
    ENGINE_SAMPLE_RATE,
    EndOfTurnModel,
    ProviderError,
    VadStream,
)
from hubbub.conversation.voice.speech import SpeechStack, stage_hints
from hubbub.conversation.voice.turn_taking import TurnPolicy, turn_policy

log = logging.getLogger(__name__)

# Audio kept from before the VAD's speech start (which fires ~100 ms into speech), so the
# recogniser hears the first syllable too.
PRE_ROLL_MS: Final = 400
SERVER_VAD_TURN_ID: Final = ""  # the turn id of continuous server-VAD audio
# The end-of-turn model hears at most this much of the utterance (Smart Turn: 8 s).
END_OF_TURN_AUDIO_BYTES: Final = ENGINE_SAMPLE_RATE * 2 * 8
# The end-of-turn model starts this long before its silence is reached (its inference takes
# ~30-60 ms on a core); it hears the same utterance with a little less silence after it, which
# does not change its verdict (Smart Turn judges how the speech ends, not the silence).
END_OF_TURN_LEAD_MS: Final = 64
_BYTES_PER_MS: Final = ENGINE_SAMPLE_RATE * 2 / 1000


class VoiceInput:
    def __init__(
        self,
        speech: SpeechStack,
        project: LoadedProject,
        audio_format: str,
        monotonic: Callable[[], float],
        hold_voice: Callable[[bool], None] = lambda held: None,
    ) -> None:
        """``hold_voice(True)`` pauses the agent's voice mid-sentence (a possible
        interruption), ``hold_voice(False)`` resumes it."""
        self._speech = speech
        self._monotonic = monotonic
        self._project = project
        self._format = audio_format
        self._config = project.project.asr_config
        self._hold_voice = hold_voice
        self._held = False
        self._turn: InputTurn | None = None
        self._vad: VadStream | None = None
        self._vad_converter: ClientToEngine | None = None
        self._vad_silence_ms = 0
        self._in_speech = False
        self._end_of_turn: EndOfTurnModel | None = None
        self._pre_roll = PreRoll(ENGINE_SAMPLE_RATE * 2 * PRE_ROLL_MS // 1000)
        if self._config.server_vad:
            self._end_of_turn = speech.end_of_turn()
            # The VAD reports the shortest silence any stage waits for; a stage that wants
            # longer keeps the turn open past it (``InputTurn.silence_ms``).
            policies = [self._policy(stage_id) for stage_id in project.stages]
            self._vad_silence_ms = min(
                _listening_silence_ms(q) for q in policies or [self._policy(None)]
            )
            self._vad = speech.vad().open_stream(silence_ms=self._vad_silence_ms)
            self._vad_converter = ClientToEngine(audio_format)

    def _policy(self, stage_id: str | None) -> TurnPolicy:
        return turn_policy(
            self._project, stage_id, semantic_available=self._end_of_turn is not None
        )

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
            if turn.asr is not None and not turn.failed and turn.final_text is None:
                try:
                    text = (await turn.asr.finish()).text.strip()
                except ProviderError as exc:
                    log.warning("input turn %s: ASR failed: %s", turn.id, exc)
            if turn.final_text is not None:  # already taken to judge an interruption
                text = turn.final_text
            asr_ms = round((monotonic() - started) * 1000, 3)
            self._push_transcript(turn, text, is_final=True)
            return text or placeholder, asr_ms

        conversation.end_voice(turn.id, transcribe, received)

    async def close(self) -> None:
        turn = self._turn
        await self._drop_turn()
        self._hold(False)
        if self._vad is not None:
            self._vad.close()
        if turn is not None and not turn.candidate:
            turn.conversation.cancel_voice()

    # --- internals -------------------------------------------------------------------------

    async def _open(
        self, conversation: VoiceTurns, turn_id: str, *, by_vad: bool, candidate: bool = False
    ) -> None:
        asr = None
        try:
            hints = stage_hints(self._project, conversation.stage_id)
            if candidate and hints:  # so "yeah" is heard as "yeah", not as a stage word
                hints += sorted(self._policy(conversation.stage_id).backchannels)
            asr = await self._speech.asr_for(self._project).open_stream(
                language=self._config.language, hints=hints
            )
        except (ProviderError, ValueError) as exc:
            log.warning("input turn %s: cannot start ASR: %s", turn_id, exc)
        self._turn = InputTurn(
            turn_id, conversation, asr, ClientToEngine(self._format), by_vad, candidate=candidate
        )

    async def _drop_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None and turn.asr is not None:
            await turn.asr.cancel()

    async def _feed(self, turn: InputTurn, pcm: bytes) -> None:
        if turn.asr is None or turn.failed or not pcm:
            return
        turn.pcm_bytes += len(pcm)
        if turn.by_vad:
            turn.recent += pcm
            del turn.recent[:-END_OF_TURN_AUDIO_BYTES]
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
                if not turn.candidate:
                    self._push_transcript(turn, text, is_final=False)

    def _push_transcript(self, turn: InputTurn, text: str, *, is_final: bool) -> None:
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
            self._in_speech = boundary == "speech_start"
            turn = self._turn
            if boundary == "speech_start":
                if turn is not None and turn.by_vad:
                    turn.silence_ms = None  # speech resumed: the same turn goes on
                    turn.verdict = turn.verdict_at_ms = None  # on the utterance as it was
                    continue
                if turn is not None or not conversation.can_start_voice:
                    continue
                if conversation.speaking:  # over the agent: an interruption only if it is one
                    await self._open(conversation, "", by_vad=True, candidate=True)
                else:
                    await self._open(conversation, self._start(conversation), by_vad=True)
                assert self._turn is not None
                await self._feed(self._turn, self._pre_roll.take())
                fed = True
            elif boundary == "speech_end" and turn is not None and turn.by_vad:
                if not fed:
                    await self._feed(turn, pcm)
                    fed = True
                await self._speech_ended(conversation, turn)
        turn = self._turn
        if turn is None or not turn.by_vad:
            return
        if not fed:
            await self._feed(turn, pcm)
        await self._after_audio(conversation, turn, len(pcm) / _BYTES_PER_MS)

    def _start(self, conversation: VoiceTurns) -> str:
        turn_id = conversation.start_voice()
        conversation.push(
            UserSpeakingStarted(conversation_id=conversation.id, input_turn_id=turn_id)
        )
        return turn_id

    def _hold(self, held: bool) -> None:
        if held != self._held:
            self._held = held
            self._hold_voice(held)

    def _interrupt(self, conversation: VoiceTurns, turn: InputTurn) -> None:
        """The candidate is an interruption: the answer is aborted, the user's turn opens."""
        turn.candidate = False
        turn.id = self._start(conversation)  # aborts the answer (its held voice is dropped)
        self._hold(False)
        if turn.last_text:
            self._push_transcript(turn, turn.last_text, is_final=False)

    async def _after_audio(self, conversation: VoiceTurns, turn: InputTurn, ms: float) -> None:
        """Counts the audio of the open server-VAD turn: interruption thresholds, the false
        interruption timeout, and the extra silence an unfinished utterance waits for."""
        if turn.candidate:
            await self._candidate_audio(conversation, turn, ms)
            return
        if turn.silence_ms is not None and not self._in_speech:
            turn.silence_ms += ms
            if turn.verdict_at_ms is not None and turn.silence_ms >= turn.verdict_at_ms:
                turn.verdict_at_ms = None
                self._ask_end_of_turn(turn)
            if turn.silence_ms >= turn.silence_needed_ms:
                await self._silence_reached(conversation, turn)

    async def _candidate_audio(self, conversation: VoiceTurns, turn: InputTurn, ms: float) -> None:
        policy = self._policy(conversation.stage_id)
        if self._in_speech:
            turn.speech_ms += ms
        elif turn.silence_ms is not None:
            turn.silence_ms += ms
        # While the VAD is in speech its last ``_vad_silence_ms`` may already be silence.
        spoken_ms = turn.speech_ms - (self._vad_silence_ms if self._in_speech else 0)
        if spoken_ms >= policy.min_interruption_ms and conversation.speaking:
            # Interim hypotheses of a short sound are unreliable ("mm-hm" may first be heard
            # as "no"): they decide only once the speech has lasted twice the minimum; until
            # then the final transcript does, when the speech ends.
            if spoken_ms >= 2 * policy.min_interruption_ms and policy.interrupts(turn.last_text):
                self._interrupt(conversation, turn)
                return
            backchannel_only = bool(turn.last_text) and not policy.meaningful_words(turn.last_text)
            if turn.held_ms is None and not backchannel_only:
                turn.held_ms = 0.0
                self._hold(True)
            elif self._held:
                turn.held_ms = (turn.held_ms or 0.0) + ms
                if turn.held_ms >= policy.false_interruption_timeout_ms:
                    self._hold(False)  # a false interruption: the agent goes on
        if turn.silence_ms is not None and turn.silence_ms >= turn.silence_needed_ms:
            await self._judge_candidate(conversation, turn, policy)

    async def _speech_ended(self, conversation: VoiceTurns, turn: InputTurn) -> None:
        policy = self._policy(conversation.stage_id)
        if turn.candidate:
            # A pause inside "wait, … stop" is not the end of it: the candidate is judged
            # after the stage's full end-of-turn silence.
            turn.speech_ms = max(0.0, turn.speech_ms - self._vad_silence_ms)
            turn.silence_ms = float(self._vad_silence_ms)
            turn.silence_needed_ms = float(max(policy.silence_ms, self._vad_silence_ms))
            return
        if not conversation.receiving_voice:
            await self._drop_turn()  # the conversation moved on (ended, resumed elsewhere)
            return
        turn.silence_ms = float(self._vad_silence_ms)
        turn.silence_needed_ms = float(policy.silence_ms)
        if policy.end_of_turn == "semantic" and self._end_of_turn is not None:
            self._ask_end_of_turn(turn)
            turn.silence_needed_ms = float(policy.semantic_silence_ms)
        if turn.silence_ms >= turn.silence_needed_ms:
            await self._silence_reached(conversation, turn)

    def _ask_end_of_turn(self, turn: InputTurn) -> None:
        """The model starts judging the utterance so far; the silence goes on meanwhile."""
        assert self._end_of_turn is not None
        turn.verdict = asyncio.ensure_future(
            _verdict(self._end_of_turn, turn.id, bytes(turn.recent))
        )

    async def _silence_reached(self, conversation: VoiceTurns, turn: InputTurn) -> None:
        """The silence after the open turn's speech is as long as it needed to be: the turn
        ends, unless the end-of-turn model heard an unfinished utterance (then the model is
        asked again after another ``semanticSilenceMs``, up to ``maxSilenceMs``; the full
        silence if the model failed)."""
        verdict, turn.verdict = turn.verdict, None
        if verdict is not None:
            policy = self._policy(conversation.stage_id)
            finished = await verdict
            if finished is None:
                turn.silence_needed_ms = float(policy.silence_ms)
            elif finished < policy.finished_threshold:
                # Asked again each time the pause has grown by semanticSilenceMs: a finished
                # sentence with a flat ending often reads as finished only after a longer
                # pause, and waiting the whole maxSilenceMs for it is what users notice.
                again_ms = turn.silence_needed_ms + policy.semantic_silence_ms
                if policy.semantic_silence_ms > 0 and again_ms < policy.max_silence_ms:
                    turn.silence_needed_ms = again_ms
                    turn.verdict_at_ms = again_ms - END_OF_TURN_LEAD_MS
                else:
                    turn.silence_needed_ms = float(policy.max_silence_ms)
            if turn.silence_ms is not None and turn.silence_ms < turn.silence_needed_ms:
                return
        if self._turn is turn and conversation.receiving_voice:
            await self.end(conversation, turn.id, self._monotonic())

    async def _judge_candidate(
        self, conversation: VoiceTurns, turn: InputTurn, policy: TurnPolicy
    ) -> None:
        """Speech over the agent has ended before it interrupted: its final words decide."""
        text = ""
        if turn.asr is not None and not turn.failed:
            try:
                text = (await turn.asr.finish()).text.strip()
            except ProviderError as exc:
                log.warning("interruption check: ASR failed: %s", exc)
        turn.final_text = text
        spoken_ms = turn.speech_ms
        if (
            conversation.speaking
            and spoken_ms >= policy.min_interruption_ms
            and policy.interrupts(text)
        ):
            turn.last_text = text
            self._interrupt(conversation, turn)
            await self.end(conversation, turn.id, self._monotonic())
            return
        if not conversation.speaking and conversation.can_start_voice and policy.interrupts(text):
            turn.last_text = text  # the agent finished meanwhile: it is an ordinary turn
            self._interrupt(conversation, turn)
            await self.end(conversation, turn.id, self._monotonic())
            return
        log.info(
            "conversation %s: speech over the agent did not interrupt it (%.0f ms, %r)",
            conversation.id,
            spoken_ms,
            text,
        )
        self._turn = None  # a backchannel, or a sound: the agent goes on
        self._hold(False)


def _listening_silence_ms(policy: TurnPolicy) -> int:
    """The silence after which voice input starts deciding whether the turn is over."""
    if policy.end_of_turn == "semantic":
        return max(policy.semantic_silence_ms - END_OF_TURN_LEAD_MS, 0)
    return policy.silence_ms


async def _verdict(model: EndOfTurnModel, turn_id: str, utterance: bytes) -> float | None:
    """The probability that the utterance is finished, or None when the model failed."""
    try:
        return await model.finished_probability(utterance)
    except ProviderError as exc:
        log.warning("input turn %s: end-of-turn model failed: %s", turn_id, exc)
        return None
