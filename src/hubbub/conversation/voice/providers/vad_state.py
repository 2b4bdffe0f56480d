"""The speech/silence state machine behind every VAD stream, free of any model.

A voice-activity model gives one speech probability per window (Silero: 32 ms). Raw
probabilities flicker, so boundaries come from a small hysteresis machine:

* ``silence`` → ``speech`` (event ``speech_start``) once the probability stayed at or above
  ``threshold`` for ``start_ms`` in a row (a cough or a click is shorter);
* ``speech`` → ``silence`` (event ``speech_end``) once it stayed below ``end_threshold``
  (lower than ``threshold``, so a soft syllable does not end the utterance) for ``silence_ms``
  in a row. Anything at or above ``end_threshold`` resets the silence count.

A voice model's probability trails the audio: Silero stays above ``end_threshold`` for
~100 ms after the last sound of an utterance. So a window the caller marks ``quiet`` (its
level is near digital silence, below any speech) counts as silence whatever the model says.
That only ever shortens the wait at the end of speech: in noise no window is quiet, and a
quiet gap inside speech is followed by loud speech, which resets the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VadEvent = Literal["speech_start", "speech_end"]


@dataclass(frozen=True, slots=True)
class VadSettings:
    window_ms: float
    threshold: float = 0.5
    end_threshold: float = 0.35
    start_ms: int = 96
    silence_ms: int = 800

    def __post_init__(self) -> None:
        if self.window_ms <= 0 or self.start_ms < 0 or self.silence_ms < 0:
            raise ValueError("VAD durations must be positive")
        if not 0.0 <= self.end_threshold <= self.threshold <= 1.0:
            raise ValueError("VAD thresholds need 0 <= end_threshold <= threshold <= 1")


class SpeechStateMachine:
    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self.in_speech = False
        self._run_ms = 0.0  # how long the current candidate transition has held

    def reset(self) -> None:
        self.in_speech = False
        self._run_ms = 0.0

    def feed(self, probability: float, *, quiet: bool = False) -> VadEvent | None:
        """One window's speech probability (``quiet``: its level is below any speech);
        returns the boundary it completes, if any."""
        s = self.settings
        if not self.in_speech:
            if probability < s.threshold:
                self._run_ms = 0.0
                return None
            self._run_ms += s.window_ms
            if self._run_ms >= s.start_ms:
                self.in_speech = True
                self._run_ms = 0.0
                return "speech_start"
            return None
        if probability >= s.end_threshold and not quiet:
            self._run_ms = 0.0
            return None
        self._run_ms += s.window_ms
        if self._run_ms >= s.silence_ms:
            self.in_speech = False
            self._run_ms = 0.0
            return "speech_end"
        return None
