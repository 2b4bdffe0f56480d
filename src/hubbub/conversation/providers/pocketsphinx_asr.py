"""Offline speech recognition with PocketSphinx (its wheel ships the en-US acoustic model).

Stage biasing: PocketSphinx's general English trigram model is weak on short conversational
utterances (measured on 22 synthesized support-desk phrases: 77% WER with espeak-ng speech).
When the stage gives hints (its action examples and keywords), the utterance is decoded with a
small back-off trigram model trained on those hints plus a few everyday phrases, built with
PocketSphinx's own ARPA builder. Back-off still lets any sequence of the known words through,
so paraphrases of the examples are recognised; words outside the stage's vocabulary are not
(the trade-off that took WER on paraphrased hints to 12.5% with Piper speech and 23% with
espeak-ng speech; see tests/voice/test_asr_accuracy.py). Without hints the general model is
used. Words the pronunciation dictionary lacks are left out of the hint model.

Decoders are expensive to create (~0.5 s: model loading), so idle ones are pooled and reused;
each keeps the hint models it has already loaded (a small LRU). All decoding runs in a thread
executor: the event loop never waits for the recogniser.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any, Final

import pocketsphinx
from pocketsphinx.lm import ArpaBoLM

from hubbub.conversation.providers.base import AsrProvider, AsrStream, ProviderError, Transcript

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
_MAX_HINT_MODELS_PER_DECODER: Final = 8
_MAX_IDLE_DECODERS: Final = 4


def _normalise_hint(hint: str) -> str:
    kept = "".join(ch if ch.isalnum() or ch in " '" else " " for ch in hint.lower())
    return " ".join(kept.split())


class _Recogniser:
    """One PocketSphinx decoder and the hint models it has loaded. Used by one thread at a time."""

    def __init__(self) -> None:
        self.decoder: Any = pocketsphinx.Decoder(loglevel="FATAL")
        self._default_search: str = self.decoder.current_search()
        self._hint_searches: OrderedDict[tuple[str, ...], str] = OrderedDict()
        self._next_search_id = 0
        # A cancelled await leaves its executor job running: this keeps a later call (cancel)
        # from touching the decoder until that job is done.
        self._busy = threading.Lock()

    def _known(self, word: str) -> bool:
        return self.decoder.lookup_word(word) is not None

    def _build_hint_model(self, hints: tuple[str, ...]) -> str:
        lines = []
        for phrase in (*hints, *_EVERYDAY_PHRASES):
            words = [w for w in _normalise_hint(phrase).split() if self._known(w)]
            if words:
                lines.append(" ".join(words))
        builder = ArpaBoLM(text="\n".join(lines), add_start=True)
        builder.compute()
        arpa = io.StringIO()
        builder.write(arpa)
        name = f"hints{self._next_search_id}"
        self._next_search_id += 1
        fd, path = tempfile.mkstemp(suffix=".arpa")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(arpa.getvalue())
            self.decoder.add_lm_file(name, path)
        finally:
            os.unlink(path)
        return name

    def start(self, hints: tuple[str, ...]) -> None:
        with self._busy:
            self._start(hints)

    def _start(self, hints: tuple[str, ...]) -> None:
        if not hints:
            self.decoder.activate_search(self._default_search)
        else:
            name = self._hint_searches.get(hints)
            if name is None:
                name = self._build_hint_model(hints)
                self._hint_searches[hints] = name
                if len(self._hint_searches) > _MAX_HINT_MODELS_PER_DECODER:
                    _, evicted = self._hint_searches.popitem(last=False)
                    self.decoder.remove_search(evicted)
            else:
                self._hint_searches.move_to_end(hints)
            self.decoder.activate_search(name)
        self.decoder.start_utt()

    def _hypothesis(self) -> str:
        hypothesis = self.decoder.hyp()
        return str(hypothesis.hypstr) if hypothesis is not None else ""

    def process(self, pcm16k: bytes) -> str:
        with self._busy:
            self.decoder.process_raw(pcm16k, no_search=False, full_utt=False)
            return self._hypothesis()

    def end(self) -> str:
        with self._busy:
            self.decoder.end_utt()
            return self._hypothesis()


class PocketsphinxAsr(AsrProvider):
    """English only. ``executor`` runs decoding (default: the loop's default executor)."""

    def __init__(self, *, executor: Executor | None = None) -> None:
        self._executor = executor
        self._idle: list[_Recogniser] = []
        self._idle_lock = threading.Lock()

    async def _run(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def _acquire(self) -> _Recogniser:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        return _Recogniser()

    def _release(self, recogniser: _Recogniser) -> None:
        with self._idle_lock:
            if len(self._idle) < _MAX_IDLE_DECODERS:
                self._idle.append(recogniser)

    async def warm_up(self) -> None:
        """Load one decoder ahead of the first utterance (optional)."""
        self._release(await self._run(self._acquire))

    async def open_stream(self, *, language: str, hints: Sequence[str] = ()) -> AsrStream:
        if not language.lower().startswith("en"):
            raise ProviderError(f"pocketsphinx: unsupported language {language!r}")
        normalised = tuple(sorted({h for h in map(_normalise_hint, hints) if h}))

        def start() -> _Recogniser:
            recogniser = self._acquire()
            recogniser.start(normalised)
            return recogniser

        try:
            recogniser = await self._run(start)
        except RuntimeError as exc:  # pocketsphinx reports decoder failures as RuntimeError
            raise ProviderError(f"pocketsphinx: {exc}") from exc
        return _PocketsphinxStream(self, recogniser)


class _PocketsphinxStream(AsrStream):
    def __init__(self, provider: PocketsphinxAsr, recogniser: _Recogniser) -> None:
        self._provider = provider
        self._recogniser: _Recogniser | None = recogniser
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
            try:
                text = await self._provider._run(recogniser.end)
            except RuntimeError as exc:
                raise ProviderError(f"pocketsphinx: {exc}") from exc
            self._provider._release(recogniser)
            return Transcript(text, is_final=True)

    async def cancel(self) -> None:
        async with self._lock:
            recogniser, self._recogniser = self._recogniser, None
            if recogniser is not None:
                try:
                    await self._provider._run(recogniser.end)
                except RuntimeError:
                    return  # a broken decoder is not put back in the pool
                self._provider._release(recogniser)
