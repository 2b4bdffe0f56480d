"""Offline speech recognition with PocketSphinx (its wheel ships the en-US acoustic model).

Stage biasing: PocketSphinx's general English trigram model is weak on short conversational
utterances. When the stage gives hints (its action examples and keywords), the utterance is
decoded with a small back-off trigram model trained on those hints plus a few everyday
phrases (PocketSphinx's own ARPA builder), over a dictionary cut down to that vocabulary.
Back-off still lets any sequence of the known words through, so paraphrases of the examples
are recognised. Speech off the stage's script would be forced into its words, so an utterance
the hint model fits poorly is decoded again with the general model, whose text wins when it
fits better (see ``DEFAULT_OFF_HINT_FIT``). Measured on 22 support-desk utterances synthesized
by the tests, with hints written as paraphrases of them: WER 9-11% with Piper speech (18%
with the general model alone) and 21% with espeak-ng speech (77% with the general model
alone); see tests/voice/test_asr_accuracy.py. Without hints the general model is used.

Decoders are pooled per hint set: a hint decoder takes ~30 ms to build, the general one ~1 s
(its 134k-word dictionary). All decoding runs in a thread executor: the event loop never
waits for the recogniser.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any, Final

import pocketsphinx
from pocketsphinx.lm import ArpaBoLM

from hubbub.conversation.voice.providers.base import (
    ENGINE_SAMPLE_RATE,
    AsrProvider,
    AsrStream,
    ProviderError,
    Transcript,
)

_EVERYDAY_PHRASES: Final = (
    "yes",
    "no",
    "yes please",
    "no thank you",
    "thank you",
    "thanks",
    "hello",
    "hi",
    "goodbye",
    "okay",
    "sorry",
    "I do not know",
    "can you repeat that",
)
_MAX_IDLE_DECODERS: Final = 8
# Off-script speech: when the hint model's best path fits the audio poorly (below this, per
# frame, 0..1), the utterance is decoded again with the general model, and that text wins if
# its path fits better. Measured on synthesized speech with the test hints: on-script
# utterances fit 0.46..0.77 (Piper voice) and 0.30..0.58 (espeak-ng), off-script ones
# 0.17..0.34; the general model fits off-script speech better by 0.08..0.12 (Piper) and
# on-script speech worse by 0.07..0.20 (Piper) and 0.01..0.16 (espeak-ng). The second pass
# costs latency (general model: ~0.5x real time) only for poorly fitting utterances.
DEFAULT_OFF_HINT_FIT: Final = 0.35
DEFAULT_MAX_FALLBACK_S: Final = 30


def _normalise_hint(hint: str) -> str:
    kept = "".join(ch if ch.isalnum() or ch in " '" else " " for ch in hint.lower())
    return " ".join(kept.split())


@functools.cache
def _pronunciations() -> dict[str, list[str]]:
    """The shipped CMU dictionary, word → its lines (alternates like ``word(2)`` included)."""
    path = os.path.join(pocketsphinx.get_model_path(), "en-us", "cmudict-en-us.dict")
    entries: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as file:
        for line in file:
            word = line.split(" ", 1)[0].split("(", 1)[0]
            entries.setdefault(word, []).append(line if line.endswith("\n") else line + "\n")
    return entries


def _hint_decoder(hints: tuple[str, ...]) -> Any:
    """A decoder whose language model and dictionary hold only the hint vocabulary.

    Adding a small model to a decoder that has the full 134k-word dictionary costs ~20 s (the
    search is built over the whole dictionary); a decoder built with a matching small
    dictionary takes ~30 ms.
    """
    pronunciations = _pronunciations()
    lines = []
    for phrase in (*hints, *_EVERYDAY_PHRASES):
        words = [w for w in _normalise_hint(phrase).split() if w in pronunciations]
        if words:
            lines.append(" ".join(words))
    builder = ArpaBoLM(text="\n".join(lines), add_start=True)
    builder.compute()
    arpa = io.StringIO()
    builder.write(arpa)
    vocabulary = sorted({w for line in lines for w in line.split()})
    with tempfile.TemporaryDirectory(prefix="hubbub-asr-") as directory:
        lm_path = os.path.join(directory, "hints.arpa")
        dict_path = os.path.join(directory, "hints.dict")
        with open(lm_path, "w", encoding="utf-8") as file:
            file.write(arpa.getvalue())
        with open(dict_path, "w", encoding="utf-8") as file:
            file.writelines(line for w in vocabulary for line in pronunciations[w])
        return pocketsphinx.Decoder(loglevel="FATAL", lm=lm_path, dict=dict_path)


class _Recogniser:
    """One PocketSphinx decoder for one hint set. Used by one thread at a time."""

    def __init__(self, hints: tuple[str, ...]) -> None:
        self.hints = hints
        self.decoder: Any = (
            _hint_decoder(hints) if hints else pocketsphinx.Decoder(loglevel="FATAL")
        )
        # A cancelled await leaves its executor job running: this keeps a later call (cancel)
        # from touching the decoder until that job is done.
        self._busy = threading.Lock()

    def start(self) -> None:
        with self._busy:
            self.decoder.start_utt()

    def _hypothesis(self) -> str:
        hypothesis = self.decoder.hyp()
        return str(hypothesis.hypstr) if hypothesis is not None else ""

    def process(self, pcm16k: bytes) -> str:
        with self._busy:
            self.decoder.process_raw(pcm16k, no_search=False, full_utt=False)
            return self._hypothesis()

    def end(self) -> tuple[str, float]:
        """The final text and how well the best path fits the audio (0..1, per frame)."""
        with self._busy:
            self.decoder.end_utt()
            hypothesis = self.decoder.hyp()
            if hypothesis is None:
                return "", 0.0
            return str(hypothesis.hypstr), float(hypothesis.best_score)

    def decode_whole(self, pcm16k: bytes) -> tuple[str, float]:
        with self._busy:
            self.decoder.start_utt()
        self.process(pcm16k)
        return self.end()


class PocketsphinxAsr(AsrProvider):
    """English only. ``executor`` runs decoding (default: the loop's default executor)."""

    def __init__(
        self,
        *,
        executor: Executor | None = None,
        off_hint_fit: float | None = DEFAULT_OFF_HINT_FIT,
        max_fallback_s: int = DEFAULT_MAX_FALLBACK_S,
    ) -> None:
        self._executor = executor
        self.off_hint_fit = off_hint_fit
        self.max_fallback_bytes = max_fallback_s * ENGINE_SAMPLE_RATE * 2
        # Idle decoders, least recently used first; each is tied to its hint set.
        self._idle: list[_Recogniser] = []
        self._idle_lock = threading.Lock()

    async def _run(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def _acquire(self, hints: tuple[str, ...]) -> _Recogniser:
        with self._idle_lock:
            for index in range(len(self._idle) - 1, -1, -1):
                if self._idle[index].hints == hints:
                    return self._idle.pop(index)
        return _Recogniser(hints)

    def _release(self, recogniser: _Recogniser) -> None:
        with self._idle_lock:
            self._idle.append(recogniser)
            del self._idle[:-_MAX_IDLE_DECODERS]

    async def warm_up(self, hints: Sequence[str] = ()) -> None:
        """Load a decoder (the general one takes ~1 s) ahead of the first utterance."""
        key = tuple(sorted({h for h in map(_normalise_hint, hints) if h}))
        self._release(await self._run(self._acquire, key))

    async def open_stream(self, *, language: str, hints: Sequence[str] = ()) -> AsrStream:
        if not language.lower().startswith("en"):
            raise ProviderError(f"pocketsphinx: unsupported language {language!r}")
        normalised = tuple(sorted({h for h in map(_normalise_hint, hints) if h}))

        def start() -> _Recogniser:
            recogniser = self._acquire(normalised)
            recogniser.start()
            return recogniser

        try:
            recogniser = await self._run(start)
        except RuntimeError as exc:  # pocketsphinx reports decoder failures as RuntimeError
            raise ProviderError(f"pocketsphinx: {exc}") from exc
        keep_audio = bool(normalised) and self.off_hint_fit is not None
        return _PocketsphinxStream(self, recogniser, keep_audio=keep_audio)

    def _decode_with_general_model(self, pcm16k: bytes) -> tuple[str, float]:
        recogniser = self._acquire(())
        result = recogniser.decode_whole(pcm16k)
        self._release(recogniser)
        return result


class _PocketsphinxStream(AsrStream):
    def __init__(
        self, provider: PocketsphinxAsr, recogniser: _Recogniser, *, keep_audio: bool
    ) -> None:
        self._provider = provider
        self._recogniser: _Recogniser | None = recogniser
        # The utterance, kept for a second pass with the general model if it turns out not
        # to be what the stage expected; None once that is off (or the utterance too long).
        self._audio: bytearray | None = bytearray() if keep_audio else None
        self._lock = asyncio.Lock()  # keeps decoder calls in order even if pushes overlap
        self._last_interim = ""
        self._pending = b""  # an odd trailing byte waiting for its pair

    async def push(self, pcm16k: bytes) -> list[Transcript]:
        async with self._lock:
            recogniser = self._recogniser
            if recogniser is None:
                return []
            data = self._pending + pcm16k
            usable = len(data) - len(data) % 2
            self._pending = data[usable:]
            if not usable:
                return []
            if self._audio is not None:
                self._audio += data[:usable]
                if len(self._audio) > self._provider.max_fallback_bytes:
                    self._audio = None
            try:
                text = await self._provider._run(recogniser.process, data[:usable])
            except RuntimeError as exc:
                raise ProviderError(f"pocketsphinx: {exc}") from exc
            if text and text != self._last_interim:
                self._last_interim = text
                return [Transcript(text, is_final=False)]
            return []

    async def finish(self) -> Transcript:
        async with self._lock:
            recogniser, self._recogniser = self._recogniser, None
            if recogniser is None:
                return Transcript("", is_final=True)
            audio, self._audio = self._audio, None
            threshold = self._provider.off_hint_fit
            try:
                text, fit = await self._provider._run(recogniser.end)
                self._provider._release(recogniser)
                if text and audio and threshold is not None and fit < threshold:
                    general_text, general_fit = await self._provider._run(
                        self._provider._decode_with_general_model, bytes(audio)
                    )
                    if general_fit > fit:
                        text = general_text
            except RuntimeError as exc:
                raise ProviderError(f"pocketsphinx: {exc}") from exc
            return Transcript(text, is_final=True)

    async def cancel(self) -> None:
        async with self._lock:
            recogniser, self._recogniser = self._recogniser, None
            self._audio = None
            if recogniser is not None:
                try:
                    await self._provider._run(recogniser.end)
                except RuntimeError:
                    return  # a broken decoder is not put back in the pool
                self._provider._release(recogniser)
