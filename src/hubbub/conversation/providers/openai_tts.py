"""Speech synthesis through an OpenAI-compatible ``POST {base_url}/audio/speech``.

Asks for ``response_format: "wav"`` (its header carries the sample rate, which differs
between servers) and streams the body: audio is resampled to 16 kHz and handed out as it
arrives. Closing the iterator closes the HTTP response, which stops the server's work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

import aiohttp

from hubbub.conversation.audio import (
    AudioFormatError,
    Resampler,
    parse_wav_header,
    pcm16_to_samples,
    samples_to_pcm16,
)
from hubbub.conversation.providers.base import (
    ENGINE_SAMPLE_RATE,
    ProviderError,
    TtsProvider,
    VoiceSettings,
)

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
        self._url = base_url.rstrip("/") + "/audio/speech"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._model = model
        self._default_voice = default_voice
        # A long answer may stream for longer than any total timeout: bound the waits instead.
        self._timeout = aiohttp.ClientTimeout(sock_connect=timeout_s, sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[bytes]:
        request = {
            "model": self._model,
            "input": text,
            "voice": voice.voice or self._default_voice,
            "response_format": "wav",
            "speed": voice.speed,
        }
        try:
            async with self._client().post(self._url, json=request, headers=self._headers) as reply:
                if reply.status != 200:
                    raise ProviderError(f"speech service answered HTTP {reply.status}")
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
                    raise ProviderError("speech service answered without audio")
                tail = samples_to_pcm16(resampler.flush())
                if tail:
                    yield tail
        except AudioFormatError as exc:
            raise ProviderError(f"speech service answered invalid WAV: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"speech service unreachable: {exc}") from exc
