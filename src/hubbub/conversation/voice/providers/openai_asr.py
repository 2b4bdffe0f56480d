"""Speech recognition through an OpenAI-compatible ``POST {base_url}/audio/transcriptions``.

For Whisper-class servers (OpenAI, faster-whisper-server, whisper.cpp server, LocalAI, ...).
The endpoint transcribes whole files, so a stream buffers the utterance (bounded) and uploads
it as a 16 kHz WAV at ``finish()``; there are no interim results. Stage hints go into
``prompt``, which Whisper models use to bias spelling and vocabulary. HTTP, timeouts (``timeout_s``
bounds the whole upload and answer) and error messages come from :class:`OpenAiHttpClient`.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from typing import Final

from hubbub.conversation.voice.providers.base import (
    ENGINE_SAMPLE_RATE,
    AsrProvider,
    AsrStream,
    Transcript,
)
from hubbub.conversation.voice.providers.openai_http import OpenAiHttpClient, Upload

DEFAULT_MAX_UTTERANCE_S: Final = 120
_MAX_PROMPT_CHARS: Final = 800  # Whisper reads ~224 prompt tokens; more is ignored


class OpenAiCompatibleAsr(AsrProvider):
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        model: str = "whisper-1",
        timeout_s: float = 30.0,
        max_utterance_s: int = DEFAULT_MAX_UTTERANCE_S,
    ) -> None:
        self._http = OpenAiHttpClient(
            base_url=base_url, api_key=api_key, service="speech recognition", timeout_s=timeout_s
        )
        self._model = model
        self._max_bytes = max_utterance_s * ENGINE_SAMPLE_RATE * 2

    async def close(self) -> None:
        await self._http.close()

    async def open_stream(self, *, language: str, hints: Sequence[str] = ()) -> AsrStream:
        return _UploadingStream(self, language.split("-")[0].lower(), ", ".join(hints))

    async def transcribe(self, pcm16k: bytes, *, language: str, prompt: str) -> str:
        fields: dict[str, str | Upload] = {
            "file": Upload(_wav(pcm16k), filename="speech.wav", content_type="audio/wav"),
            "model": self._model,
            "response_format": "json",
        }
        if language:
            fields["language"] = language
        if prompt:
            fields["prompt"] = prompt[:_MAX_PROMPT_CHARS]
        async with self._http.post_form("/audio/transcriptions", fields) as reply:
            body = await self._http.read_json(reply)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise self._http.error("the speech recognition server answered without a text field")
        return text.strip()


class _UploadingStream(AsrStream):
    def __init__(self, provider: OpenAiCompatibleAsr, language: str, prompt: str) -> None:
        self._provider = provider
        self._language = language
        self._prompt = prompt
        self._audio = bytearray()
        self._done = False

    async def push(self, pcm16k: bytes) -> list[Transcript]:
        if not self._done:
            room = self._provider._max_bytes - len(self._audio)
            self._audio += pcm16k[: max(room, 0)]  # past the bound, audio is dropped
        return []

    async def finish(self) -> Transcript:
        if self._done:
            return Transcript("", is_final=True)
        self._done = True
        audio, self._audio = bytes(self._audio[: len(self._audio) // 2 * 2]), bytearray()
        if not audio:
            return Transcript("", is_final=True)
        text = await self._provider.transcribe(audio, language=self._language, prompt=self._prompt)
        return Transcript(text, is_final=True)

    async def cancel(self) -> None:
        self._done = True
        self._audio = bytearray()


def _wav(pcm16k: bytes) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(ENGINE_SAMPLE_RATE)
        writer.writeframes(pcm16k)
    return buffer.getvalue()
