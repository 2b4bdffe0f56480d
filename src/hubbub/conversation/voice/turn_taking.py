"""Natural turn-taking in server-VAD mode: when the user's turn ends, and when speech over the
agent is an interruption. Sans-I/O: :class:`VoiceInput` feeds it audio durations and
transcripts and acts on its answers.

End of turn (``endOfTurn``):

* ``silence`` (the default: a project written before turn-taking existed behaves as it did,
  and a short pause after "Hello," never cuts a user off unless the project asks for it): the
  turn ends after ``asrConfig.autoEndSilenceDurationMs`` of silence.
* ``semantic`` (opt-in, needs the Smart Turn model): the end-of-turn model hears the
  utterance as the silence after it grows (voice input starts it a little before
  ``semanticSilenceMs``); at or above ``finishedThreshold`` the turn ends once the silence
  reaches ``semanticSilenceMs``. Otherwise ("I need help with my order and…") the
  turn stays open until speech resumes (same turn) or the silence reaches ``maxSilenceMs``
  (default: ``autoEndSilenceDurationMs``, so the model only ever shortens the wait); the model
  hears the utterance again each time the pause has grown by another ``semanticSilenceMs``
  (a flat "… has not arrived." often reads as finished only after a longer pause). Without the
  model, ``semantic`` falls back to ``silence`` (logged once).

Speech while the agent speaks (barge-in) is a *candidate* interruption:

* once it has lasted ``minInterruptionMs`` the agent's voice pauses (over WebRTC, where the
  server paces the voice; a WebSocket client already holds the audio it was sent);
* it interrupts (``user_speaking_started``, the answer aborted) once its transcript holds
  ``minInterruptionWords`` words that are not backchannels (``backchannels``: "mm-hm", "yeah",
  "okay", "right", …): interim results count once the speech has lasted twice
  ``minInterruptionMs`` (before that they are unreliable), the final one when it ends;
* speech that ends without such words (a backchannel, a cough) is dropped, and the agent goes
  on: its paused voice resumes mid-sentence;
* a pause that yields no such words within ``falseInterruptionTimeoutMs`` is a false
  interruption: the voice resumes, and only words heard later still interrupt.

Durations are counted in audio received (server-VAD clients stream continuously), so they
need no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.project.schema import TurnTaking

EndOfTurn = Literal["silence", "semantic"]

# The pause after which the end-of-turn model's verdict counts, in real silence: the VAD counts
# near-silent windows as silence at once instead of waiting ~100 ms for Silero's probability
# to fall (200 ms counted on that probability alone would be ~300 ms of real silence).
DEFAULT_SEMANTIC_SILENCE_MS: Final = 200

DEFAULT_BACKCHANNELS: Final = (
    "mm-hm",
    "mm-hmm",
    "mhm",
    "mm",
    "hmm",
    "uh-huh",
    "huh",
    "uh",
    "um",
    "ah",
    "oh",
    "yeah",
    "yes",
    "yep",
    "okay",
    "ok",
    "right",
    "sure",
    "i see",
    "got it",
)


@dataclass(frozen=True, slots=True)
class TurnPolicy:
    end_of_turn: EndOfTurn
    silence_ms: int  # end of turn by silence alone
    semantic_silence_ms: int
    max_silence_ms: int
    finished_threshold: float
    backchannels: frozenset[str]  # normalized words
    min_interruption_ms: int
    min_interruption_words: int
    false_interruption_timeout_ms: int

    def meaningful_words(self, text: str) -> list[str]:
        """The words of ``text`` that are not backchannels (multi-word ones included)."""
        words = _words(text)
        kept: list[str] = []
        i = 0
        while i < len(words):
            pair = words[i : i + 2]
            if len(pair) == 2 and (
                " ".join(pair) in self.backchannels or "".join(pair) in self.backchannels
            ):
                i += 2
                continue
            if words[i] not in self.backchannels:
                kept.append(words[i])
            i += 1
        return kept

    def interrupts(self, text: str) -> bool:
        return len(self.meaningful_words(text)) >= max(1, self.min_interruption_words)


def _words(text: str) -> list[str]:
    # "Mm-hm." and "mm hm" are the same backchannel; hyphens join, punctuation goes.
    kept = "".join(ch if ch.isalnum() or ch in " '" else (" " if ch != "-" else "") for ch in text)
    return kept.lower().split()


def _merged(base: TurnTaking, override: TurnTaking | None) -> TurnTaking:
    if override is None:
        return base
    values = {
        name: getattr(override, name)
        if getattr(override, name) is not None
        else getattr(base, name)
        for name in TurnTaking.__struct_fields__
    }
    return TurnTaking(**values)


def turn_policy(
    project: LoadedProject, stage_id: str | None, *, semantic_available: bool
) -> TurnPolicy:
    """The stage's turn-taking (its ``turnTaking`` over the project's, over the defaults)."""
    config = project.project
    stage = project.stages.get(stage_id) if stage_id is not None else None
    taking = _merged(config.turn_taking, stage.turn_taking if stage is not None else None)
    silence_ms = config.asr_config.auto_end_silence_duration_ms
    wanted: EndOfTurn = taking.end_of_turn or "silence"
    semantic_silence_ms = taking.semantic_silence_ms
    if semantic_silence_ms is None:
        semantic_silence_ms = min(DEFAULT_SEMANTIC_SILENCE_MS, silence_ms)
    max_silence_ms = taking.max_silence_ms if taking.max_silence_ms is not None else silence_ms
    backchannels = taking.backchannels
    if backchannels is None:
        backchannels = list(DEFAULT_BACKCHANNELS)
    return TurnPolicy(
        end_of_turn=wanted if semantic_available else "silence",
        silence_ms=silence_ms,
        semantic_silence_ms=semantic_silence_ms,
        max_silence_ms=max(max_silence_ms, semantic_silence_ms),
        finished_threshold=(
            taking.finished_threshold if taking.finished_threshold is not None else 0.5
        ),
        backchannels=frozenset(" ".join(_words(b)) for b in backchannels if _words(b)),
        min_interruption_ms=(
            taking.min_interruption_ms if taking.min_interruption_ms is not None else 400
        ),
        min_interruption_words=(
            taking.min_interruption_words if taking.min_interruption_words is not None else 1
        ),
        false_interruption_timeout_ms=(
            taking.false_interruption_timeout_ms
            if taking.false_interruption_timeout_ms is not None
            else 1500
        ),
    )
