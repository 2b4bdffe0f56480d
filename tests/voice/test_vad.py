from __future__ import annotations

import random

import pytest

from hubbub.conversation.voice.providers.silero_vad import WINDOW_MS, SileroVad, SileroVadStream
from hubbub.conversation.voice.providers.vad_state import SpeechStateMachine, VadSettings

from .speech import (
    espeak_pcm16k,
    piper_pcm16k_async,
    silence,
    white_noise,
    without_trailing_silence,
)

# Windows of 32 ms: speech starts after 3 windows (96 ms), ends after 800 ms = 25 windows.
SETTINGS = VadSettings(window_ms=32, threshold=0.5, end_threshold=0.35, start_ms=96, silence_ms=800)


def run(probabilities: list[float], settings: VadSettings = SETTINGS) -> list[tuple[int, str]]:
    machine = SpeechStateMachine(settings)
    return [(i, e) for i, p in enumerate(probabilities) if (e := machine.feed(p)) is not None]


def test_speech_starts_after_start_ms_above_threshold() -> None:
    assert run([0.1, 0.9, 0.9, 0.9, 0.9]) == [(3, "speech_start")]


def test_threshold_itself_counts_as_speech() -> None:
    assert run([0.5, 0.5, 0.5]) == [(2, "speech_start")]


def test_short_bursts_never_start_speech() -> None:
    assert run([0.9, 0.9, 0.1] * 20) == []


def test_speech_ends_after_silence_ms_below_end_threshold() -> None:
    events = run([0.9] * 10 + [0.1] * 30)
    assert events == [(2, "speech_start"), (10 + 25 - 1, "speech_end")]


def test_probabilities_between_thresholds_keep_speech_going() -> None:
    # 0.4 is below threshold but above end_threshold: hysteresis keeps the utterance alive.
    assert run([0.9] * 3 + [0.4] * 100) == [(2, "speech_start")]


def test_a_syllable_inside_the_pause_restarts_the_silence_count() -> None:
    events = run([0.9] * 3 + [0.1] * 20 + [0.6] + [0.1] * 25)
    assert events == [(2, "speech_start"), (3 + 20 + 1 + 25 - 1, "speech_end")]


def test_a_second_utterance_is_detected_after_the_first_ends() -> None:
    probs = [0.9] * 5 + [0.0] * 25 + [0.9] * 5 + [0.0] * 25
    assert [e for _, e in run(probs)] == ["speech_start", "speech_end"] * 2


def test_reset_forgets_speech_and_partial_runs() -> None:
    machine = SpeechStateMachine(SETTINGS)
    for p in [0.9, 0.9, 0.9]:
        machine.feed(p)
    assert machine.in_speech
    machine.reset()
    assert not machine.in_speech
    assert machine.feed(0.9) is None
    assert machine.feed(0.9) is None
    assert machine.feed(0.9) == "speech_start"


def test_quiet_windows_count_as_silence_while_the_probability_still_trails() -> None:
    machine = SpeechStateMachine(SETTINGS)
    events = [machine.feed(0.9) for _ in range(3)]
    # The model still says speech, but the level says silence: the count runs.
    events += [machine.feed(0.9, quiet=True) for _ in range(24)]
    assert events[2] == "speech_start" and events[3:] == [None] * 24
    assert machine.feed(0.1) == "speech_end"  # the 25th silent window


def test_a_loud_window_restarts_the_count_and_quiet_never_starts_speech() -> None:
    machine = SpeechStateMachine(SETTINGS)
    assert [machine.feed(0.9, quiet=True) for _ in range(3)][-1] == "speech_start"
    events = [machine.feed(0.9, quiet=True) for _ in range(20)]
    events.append(machine.feed(0.9))  # speech again
    events += [machine.feed(0.1) for _ in range(24)]
    assert events == [None] * 45
    assert machine.feed(0.1) == "speech_end"


def test_silence_ms_is_respected_at_other_window_sizes() -> None:
    settings = VadSettings(window_ms=10, start_ms=0, silence_ms=300)
    events = run([0.9] + [0.0] * 40, settings)
    assert events == [(0, "speech_start"), (30, "speech_end")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_ms": 0},
        {"window_ms": 32, "silence_ms": -1},
        {"window_ms": 32, "threshold": 0.3, "end_threshold": 0.5},
        {"window_ms": 32, "threshold": 1.5},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        VadSettings(**kwargs)  # type: ignore[arg-type]


# --- Silero on real (synthesized) speech ---------------------------------------------------


def test_silero_finds_one_utterance_in_synthesized_speech() -> None:
    audio = silence(500) + espeak_pcm16k("Hello, I need help with my order") + silence(1200)
    stream = SileroVad().open_stream(silence_ms=800)
    rng = random.Random(7)
    events: list[str] = []
    offset = 0
    while offset < len(audio):
        size = rng.choice([1, 320, 640, 1023, 4000])  # arbitrary chunking, odd sizes too
        events += stream.process(audio[offset : offset + size])
        offset += size
    assert events == ["speech_start", "speech_end"]
    assert not stream.in_speech


def test_silero_ignores_silence_and_end_needs_the_full_silence() -> None:
    stream = SileroVad().open_stream(silence_ms=800)
    assert stream.process(silence(2000)) == []
    speech = without_trailing_silence(espeak_pcm16k("Where is my package"))
    assert stream.process(speech) == ["speech_start"]
    assert stream.process(silence(500)) == []  # shorter than silence_ms
    assert stream.process(silence(500)) == ["speech_end"]


def _speech_end_ms(stream: SileroVadStream, speech: bytes, after: bytes) -> float:
    """How long after ``speech`` (fed first) ``after`` had run when the utterance ended."""
    assert stream.process(speech) == ["speech_start"]
    for offset in range(0, len(after), 640):
        if stream.process(after[offset : offset + 640]) == ["speech_end"]:
            return (offset + 640) / 32
    raise AssertionError("no speech_end")


async def test_the_end_of_speech_is_heard_sooner_in_near_silence_and_no_sooner_in_noise() -> None:
    # Piper's speech: Silero's probability trails its end by ~100 ms (espeak's, hardly).
    speech = silence(300) + without_trailing_silence(
        await piper_pcm16k_async("I need help with my order.")
    )
    quiet, noise = silence(1000), white_noise(1000, rms=400)

    def end_ms(vad: SileroVad, after: bytes) -> float:
        return _speech_end_ms(vad.open_stream(silence_ms=200), speech, after)

    model_only, with_level = end_ms(SileroVad(quiet_rms=None), quiet), end_ms(SileroVad(), quiet)
    # The level tells the silence as it starts: within three windows of the real 200 ms
    # (the model alone: 280-340 ms).
    assert 200 <= with_level < 200 + 3 * WINDOW_MS
    assert with_level <= model_only
    # In a noisy room the level is no help, and no harm.
    assert end_ms(SileroVad(), noise) == end_ms(SileroVad(quiet_rms=None), noise)


def test_silero_reset_starts_over() -> None:
    stream = SileroVad().open_stream(silence_ms=300)
    assert stream.process(espeak_pcm16k("Hello")) == ["speech_start"]
    stream.reset()
    assert not stream.in_speech
    assert stream.process(silence(1000)) == []
    assert WINDOW_MS == 32


def test_closed_streams_give_their_detector_back_reset() -> None:
    vad = SileroVad()
    first = vad.open_stream(silence_ms=300)
    detector = first._detector
    assert first.process(espeak_pcm16k("Hello")) == ["speech_start"]  # state inside
    first.close()
    assert first.process(espeak_pcm16k("Hello")) == []  # a closed stream hears nothing
    second = vad.open_stream(silence_ms=300)
    assert second._detector is detector  # reused, not loaded again
    other = vad.open_stream(silence_ms=300)
    assert other._detector is not detector  # one per open stream
    # The reused detector starts from silence: the same speech starts one utterance.
    assert second.process(silence(500) + espeak_pcm16k("Hello")) == ["speech_start"]
