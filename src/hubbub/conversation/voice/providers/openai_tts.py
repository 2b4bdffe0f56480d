"""Speech synthesis through an OpenAI-compatible ``POST {base_url}/audio/speech``.

Asks for ``response_format: "wav"`` (its header carries the sample rate, which differs
between servers) and streams the body: audio is resampled to 16 kHz and handed out as it
arrives. Closing the iterator closes the HTTP response, which stops the server's work.
A long answer may stream for longer than any total timeout, so ``timeout_s`` bounds each wait
(connecting, and every chunk) instead of the whole request. HTTP and error messages come from
:class:`OpenAiHttpClient`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from hubbub.conversation.voice.audio import (
    AudioFormatError,
    Resampler,
    parse_wav_header,
    pcm16_to_samples,
    samples_to_pcm16,
)
from hubbub.conversation.voice.providers.base import (
    ENGINE_SAMPLE_RATE,
    TtsProvider,
    VoiceSettings,
)
from hubbub.conversation.voice.providers.openai_http import OpenAiHttpClient

_READ_BYTES: Final = 8192


class OpenAiCompatibleTts(TtsProvider):
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        model: str = "tts-1",
        default_voice: str = "alloy",
        timeout_s: float = 30.0,
    ) -> None:
        # A long answer may stream for longer than any total timeout: bound the waits instead.
        self._http = OpenAiHttpClient(
            base_url=base_url,
            api_key=api_key,
            service="speech",
            timeout_s=None,
            idle_timeout_s=timeout_s,
        )
        self._model = model
        self._default_voice = default_voice

    async def close(self) -> None:
        await self._http.close()

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[bytes]:
        request = {
            "model": self._model,
            "input": text,
            "voice": voice.voice or self._default_voice,
            "response_format": "wav",
            "speed": voice.speed,
        }
        try:
            async with self._http.post(
                "/audio/speech", json_body=request, accept="audio/wav"
            ) as reply:
                buffer = b""
                resampler: Resampler | None = None
                async for chunk in reply.content.iter_chunked(_READ_BYTES):
                    buffer += chunk
                    if resampler is None:
                        header = parse_wav_header(buffer)
                        if header is None:
                            continue
                        resampler = Resampler(header[0], ENGINE_SAMPLE_RATE)
                        buffer = buffer[header[1] :]
                    usable = len(buffer) - len(buffer) % 2
                    pcm, buffer = buffer[:usable], buffer[usable:]
                    out = samples_to_pcm16(resampler.process(pcm16_to_samples(pcm)))
                    if out:
                        yield out
                if resampler is None:
                    raise self._http.error("the speech server answered without audio")
                tail = samples_to_pcm16(resampler.flush())
                if tail:
                    yield tail
        except AudioFormatError as exc:
            raise self._http.error(f"the speech server answered invalid WAV: {exc}") from exc
