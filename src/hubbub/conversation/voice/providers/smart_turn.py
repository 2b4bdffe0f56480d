"""Semantic end of turn with Smart Turn v3 (BSD-2, shipped inside the ``pipecat-ai`` wheel).

The model listens to how an utterance ends (intonation, a trailing "and…", a filler) and gives
the probability that the speaker has finished. Its input is the last 8 s of 16 kHz audio
(left-padded with zeros when shorter) as a Whisper-style log-mel spectrogram: 80 Slaney mel
bands over a 400-sample periodic-Hann STFT with a 160-sample hop (800 frames), log10, clamped
to 8 decades below the loudest value, then scaled by ``(x + 4) / 4``. The waveform is
normalized to zero mean and unit variance first. The output is one sigmoid probability.

Only the ``.onnx`` file of the wheel is used (installed ``--no-deps``, hash-pinned, by
``constraints/voice-model.txt``): it is found through the installed distribution's file list,
so pipecat itself is never imported and nothing is downloaded. One ONNX session serves the
whole server; inference (~20-60 ms on one core) runs in a thread executor.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import onnxruntime

from hubbub.conversation.voice.providers.base import (
    ENGINE_SAMPLE_RATE,
    EndOfTurnModel,
    ProviderError,
)

DISTRIBUTION: Final = "pipecat-ai"
MODEL_FILE: Final = "smart-turn-v3.2-cpu.onnx"

_WINDOW_S: Final = 8
_N_FFT: Final = 400
_HOP: Final = 160
_MEL_BANDS: Final = 80
_FRAMES: Final = 800


def model_path() -> Path | None:
    """Where the installed wheel put the model, or None when it is not installed."""
    try:
        files = importlib.metadata.files(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files or ():
        if file.name == MODEL_FILE:
            located = Path(str(file.locate()))
            return located if located.is_file() else None
    return None


def _slaney_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Linear below 1 kHz (3 mels per 200 Hz), logarithmic above.
    linear = 3.0 * hz / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log, linear)


def _slaney_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = 200.0 * mel / 3.0
    log = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log, linear)


def _mel_filters() -> npt.NDArray[np.float64]:
    """(mel bands, FFT bins): triangles between consecutive mel edges, area-normalized."""
    bins = np.linspace(0.0, ENGINE_SAMPLE_RATE / 2, _N_FFT // 2 + 1)
    top = float(_slaney_mel(np.array([ENGINE_SAMPLE_RATE / 2.0]))[0])
    edges = _slaney_hz(np.linspace(0.0, top, _MEL_BANDS + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    triangles = np.clip(np.minimum(rising, falling), 0.0, None)
    return triangles * (2.0 / (upper - lower))


_FILTERS: Final = _mel_filters()
_HANN: Final = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(_N_FFT) / _N_FFT)  # periodic


def log_mel_features(pcm16k: bytes) -> npt.NDArray[np.float32]:
    """The model's input for the end of ``pcm16k`` (16-bit mono at 16 kHz): (1, 80, 800)."""
    samples = np.frombuffer(pcm16k[: len(pcm16k) // 2 * 2], dtype="<i2").astype(np.float32)
    window = _WINDOW_S * ENGINE_SAMPLE_RATE
    samples = samples[-window:] / 32768.0
    audio = np.zeros(window, dtype=np.float32)
    audio[window - len(samples) :] = samples
    audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    half = _N_FFT // 2
    padded = np.pad(audio.astype(np.float64), (half, half), mode="reflect")
    starts = np.arange(_FRAMES) * _HOP
    frames = padded[starts[:, None] + np.arange(_N_FFT)[None, :]]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=1)) ** 2  # (frames, bins)
    mel = np.log10(np.maximum(_FILTERS @ power.T, 1e-10))  # (bands, frames)
    mel = np.maximum(mel, mel.max() - 8.0)
    features: npt.NDArray[np.float32] = ((mel + 4.0) / 4.0).astype(np.float32)
    return features[None, :, :]


class SmartTurnEndOfTurn(EndOfTurnModel):
    """``executor`` runs inference (default: the loop's default executor)."""

    def __init__(self, *, path: Path | None = None, executor: Executor | None = None) -> None:
        located = path or model_path()
        if located is None:
            raise ProviderError(f"Smart Turn model not installed ({DISTRIBUTION} wheel)")
        self._path = located
        self._executor = executor
        self._session: onnxruntime.InferenceSession | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> onnxruntime.InferenceSession:
        with self._lock:
            if self._session is None:
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                try:
                    self._session = onnxruntime.InferenceSession(
                        str(self._path), sess_options=options
                    )
                except Exception as exc:  # onnxruntime raises its own unexported types
                    raise ProviderError(f"cannot load the Smart Turn model: {exc}") from exc
            return self._session

    def _predict(self, pcm16k: bytes) -> float:
        session = self._loaded()
        features = log_mel_features(pcm16k)
        try:
            outputs = session.run(None, {"input_features": features})
        except Exception as exc:
            raise ProviderError(f"Smart Turn inference failed: {exc}") from exc
        return float(np.asarray(outputs[0]).reshape(-1)[0])

    async def warm_up(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._loaded)

    async def finished_probability(self, pcm16k: bytes) -> float:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._predict, pcm16k
        )
