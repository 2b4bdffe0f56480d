"""When a server-VAD turn ends with the semantic end-of-turn model: the model listens while
the silence is still growing, so its verdict is ready when the silence reaches
``semanticSilenceMs``; the turn ends then (finished); an unfinished verdict is asked again
each time the pause has grown by ``semanticSilenceMs``, up to ``maxSilenceMs``; a failed model
falls back to the full silence; speech that resumes makes the verdict moot.

Socket-free and model-free: voice input is driven with 20 ms pieces of audio, a VAD that
counts them, and an end-of-turn model whose verdicts the test hands out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hubbub.conversation.project.loader import LoadedProject, parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.protocol.pushes import Push
from hubbub.conversation.voice.input import END_OF_TURN_LEAD_MS, VoiceInput
from hubbub.conversation.voice.providers.base import (
    AsrProvider,
    EndOfTurnModel,
    ProviderError,
    VadProvider,
    VadStream,
)
from tests.conversation.fake_speech import LOUD, QUIET, FakeAsr

PIECE_MS = 20  # LOUD and QUIET are 20 ms of 16 kHz audio each

PROJECT = """
id: eot
apiKeys: [{key: k}]
acceptVoice: true
asrConfig: {serverVad: true, autoEndSilenceDurationMs: 800}
turnTaking: {endOfTurn: semantic, semanticSilenceMs: 200, maxSilenceMs: 600}
startingStageId: s
stages:
  - id: s
    actions: []
"""


class CountingVadStream(VadStream):
    """Speech in any loud piece; its end after ``silence_ms`` of quiet pieces."""

    def __init__(self, silence_ms: int) -> None:
        self.silence_ms = silence_ms
        self.speaking = False
        self.quiet_ms = 0

    def process(self, pcm16k: bytes) -> list[Literal["speech_start", "speech_end"]]:
        if any(pcm16k):
            self.quiet_ms = 0
            if not self.speaking:
                self.speaking = True
                return ["speech_start"]
            return []
        if not self.speaking:
            return []
        self.quiet_ms += PIECE_MS
        if self.quiet_ms >= self.silence_ms:
            self.speaking = False
            return ["speech_end"]
        return []

    def reset(self) -> None:
        self.speaking, self.quiet_ms = False, 0


class CountingVad(VadProvider):
    def __init__(self) -> None:
        self.silence_ms: list[int] = []

    def open_stream(self, *, silence_ms: int = 800) -> VadStream:
        self.silence_ms.append(silence_ms)
        return CountingVadStream(silence_ms)


class ScriptedModel(EndOfTurnModel):
    """Each call waits for the verdict the test sets on ``verdicts[i]``."""

    def __init__(self) -> None:
        self.verdicts: list[asyncio.Future[float]] = []
        self.heard_ms: list[float] = []

    async def finished_probability(self, pcm16k: bytes) -> float:
        self.heard_ms.append(len(pcm16k) / 32)
        verdict: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.verdicts.append(verdict)
        return await verdict


@dataclass
class Speech:
    vad_provider: CountingVad = field(default_factory=CountingVad)
    model: ScriptedModel = field(default_factory=ScriptedModel)

    def asr_for(self, project: LoadedProject) -> AsrProvider:
        return FakeAsr()

    def vad(self) -> VadProvider:
        return self.vad_provider

    def end_of_turn(self) -> EndOfTurnModel:
        return self.model


@dataclass
class Turns:
    """The conversation side of voice input: records the turns it is asked to open and end."""

    started: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    pushes: list[Push] = field(default_factory=list)
    open_turn: str | None = None

    id: str = "conv_1"
    stage_id: str = "s"
    speaking: bool = False

    @property
    def can_start_voice(self) -> bool:
        return self.open_turn is None

    @property
    def receiving_voice(self) -> bool:
        return self.open_turn is not None

    def start_voice(self) -> str:
        self.open_turn = f"tinp_{len(self.started)}"
        self.started.append(self.open_turn)
        return self.open_turn

    def end_voice(
        self, turn_id: str, transcribe: Callable[[], Awaitable[tuple[str, float]]], received: float
    ) -> None:
        self.ended.append(turn_id)
        self.open_turn = None

    def cancel_voice(self) -> None:
        self.open_turn = None

    def push(self, push: Push) -> None:
        self.pushes.append(push)


def voice_input(speech: Speech) -> VoiceInput:
    project = parse_project(PROJECT, "eot.yaml", TemplateRenderer())
    return VoiceInput(speech, project, "pcm_16000", monotonic=lambda: 0.0)  # type: ignore[arg-type]


async def feed(voice: VoiceInput, turns: Turns, pieces: Sequence[bytes]) -> None:
    for piece in pieces:
        await voice.audio(turns, "", piece)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)  # the verdict task runs up to its await


async def test_the_model_listens_before_the_silence_is_reached_and_the_turn_ends_at_it() -> None:
    speech, turns = Speech(), Turns()
    voice = voice_input(speech)
    # The VAD reports the pause early enough for the model to work during the silence.
    assert speech.vad_provider.silence_ms == [200 - END_OF_TURN_LEAD_MS]
    await feed(voice, turns, [LOUD] * 25)
    assert turns.started == ["tinp_0"]
    await feed(voice, turns, [QUIET] * 7)  # 140 ms: the VAD's pause
    await settle()
    assert len(speech.model.verdicts) == 1  # asked now, 60 ms before the silence is enough
    assert speech.model.heard_ms[0] >= 25 * PIECE_MS  # the whole utterance so far
    speech.model.verdicts[0].set_result(0.9)
    await feed(voice, turns, [QUIET] * 2)  # 180 ms
    assert turns.ended == []  # finished, but the silence is not long enough yet
    await feed(voice, turns, [QUIET])  # 200 ms
    assert turns.ended == ["tinp_0"]


async def test_a_late_verdict_is_awaited_at_the_silence_and_decides() -> None:
    speech, turns = Speech(), Turns()
    voice = voice_input(speech)
    await feed(voice, turns, [LOUD] * 10 + [QUIET] * 7)
    await settle()
    deciding = asyncio.ensure_future(feed(voice, turns, [QUIET] * 3))  # reaches 200 ms
    await settle()
    assert not deciding.done() and turns.ended == []  # waits for the model, not for audio
    speech.model.verdicts[0].set_result(0.8)
    await asyncio.wait_for(deciding, 1)
    assert turns.ended == ["tinp_0"]


async def test_an_unfinished_verdict_is_asked_again_as_the_pause_grows() -> None:
    speech, turns = Speech(), Turns()
    voice = voice_input(speech)
    await feed(voice, turns, [LOUD] * 10 + [QUIET] * 7)
    await settle()
    speech.model.verdicts[0].set_result(0.1)  # a flat "... arrived." may read as unfinished
    await feed(voice, turns, [QUIET] * 9)  # 320 ms: 64 ms before 400, the model hears it again
    await settle()
    assert len(speech.model.verdicts) == 2 and turns.ended == []
    assert speech.model.heard_ms[1] > speech.model.heard_ms[0]  # with the longer pause
    speech.model.verdicts[1].set_result(0.9)
    await feed(voice, turns, [QUIET] * 3)  # 380 ms
    assert turns.ended == []
    await feed(voice, turns, [QUIET])  # 400 ms: twice semanticSilenceMs, not maxSilenceMs
    assert turns.ended == ["tinp_0"]


async def test_an_unfinished_utterance_waits_for_the_max_silence() -> None:
    speech, turns = Speech(), Turns()
    voice = voice_input(speech)
    await feed(voice, turns, [LOUD] * 10 + [QUIET] * 7)
    await settle()
    speech.model.verdicts[0].set_result(0.1)  # "I need help with my order and…"
    await feed(voice, turns, [QUIET] * 9)
    await settle()
    speech.model.verdicts[1].set_result(0.05)  # still unfinished at 400 ms
    await feed(voice, turns, [QUIET] * 13)  # 580 ms
    assert turns.ended == []
    await feed(voice, turns, [QUIET])  # 600 ms: maxSilenceMs
    assert turns.ended == ["tinp_0"]
    assert len(speech.model.verdicts) == 2  # a third would come at 600 ms: no need


async def test_speech_that_resumes_makes_the_verdict_moot() -> None:
    speech, turns = Speech(), Turns()
    voice = voice_input(speech)
    await feed(voice, turns, [LOUD] * 10 + [QUIET] * 7)
    await settle()
    await feed(voice, turns, [LOUD] * 5)  # "…and it has not arrived yet"
    speech.model.verdicts[0].set_result(0.99)  # about the utterance without its second half
    await feed(voice, turns, [QUIET] * 7)
    await settle()
    assert len(speech.model.verdicts) == 2  # the whole utterance is judged again
    assert speech.model.heard_ms[1] > speech.model.heard_ms[0]
    speech.model.verdicts[1].set_result(0.1)  # it is not finished after all
    await feed(voice, turns, [QUIET] * 9)  # past 200 ms, where the old verdict would end it
    await settle()
    assert turns.ended == [] and turns.started == ["tinp_0"]  # the same turn goes on
    speech.model.verdicts[2].set_result(0.9)  # asked again at the longer pause: finished
    await feed(voice, turns, [QUIET] * 4)  # 400 ms
    assert turns.ended == ["tinp_0"]


async def test_a_failed_model_falls_back_to_the_full_silence() -> None:
    speech, turns = Speech(), Turns()
    voice = voice_input(speech)
    await feed(voice, turns, [LOUD] * 10 + [QUIET] * 7)
    await settle()
    speech.model.verdicts[0].set_exception(ProviderError("model broke"))
    await feed(voice, turns, [QUIET] * 32)  # 780 ms
    assert turns.ended == []
    await feed(voice, turns, [QUIET])  # 800 ms: autoEndSilenceDurationMs
    assert turns.ended == ["tinp_0"]
