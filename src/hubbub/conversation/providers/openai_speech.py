"""Speech recognition and synthesis through OpenAI-compatible HTTP endpoints.

* :class:`OpenAiCompatibleAsr`: ``POST {base_url}/audio/transcriptions`` (Whisper-style). The API
  transcribes whole files, so an utterance's audio is buffered until ``finish()`` and sent as one
  16 kHz mono WAV; there are no interim results. ``hints`` become the ``prompt`` field, which
  Whisper-style models use to bias spelling and vocabulary. ``language`` is sent as its primary
  subtag (``en-US`` → ``en``), the ISO-639-1 code these servers expect.
* :class:`OpenAiCompatibleTts`: ``POST {base_url}/audio/speech`` with ``response_format: "pcm"``,
  streamed back as it is synthesized. OpenAI's ``pcm`` is 24 kHz 16-bit mono and its API has no
  sample-rate option, so the audio is resampled to the engine's 16 kHz on the fly by
  :class:`LinearResampler` (``pcm_sample_rate`` tells it the server's rate, for servers that
  differ). Linear interpolation is a weak low-pass filter: good enough for speech, whose energy
  lies well below the 8 kHz limit of 16 kHz audio, and cheap (pure Python: 10 s of 24 kHz audio
  in about 55 ms on the development machine, i.e. ~0.5 % of a core for real-time audio).

Failures raise :class:`ProviderError`, with the same messages as the LLM provider.
"""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Final

import aiohttp

from hubbub.conversation.providers.base import (
    ENGINE_SAMPLE_RATE,
    AsrProvider,
    AsrStream,
    ProviderError,
    Transcript,
    TtsProvider,
    VoiceSettings,
)
from hubbub.conversation.providers.openai_http import (
    OpenAiHttpClient,
    SessionFactory,
    default_session,
)

MAX_PROMPT_CHARS: Final = 800
_BYTES_PER_SAMPLE: Final = 2


# --- speech recognition ---------------------------------------------------------------------


class OpenAiCompatibleAsr(AsrProvider):
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str = "whisper-1",
        timeout_s: float = 30.0,
        max_utterance_s: float = 120.0,
        extra_fields: Mapping[str, str] | None = None,
        session_factory: SessionFactory = default_session,
    ) -> None:
        self._http = OpenAiHttpClient(
            base_url=base_url,
            api_key=api_key,
            service="speech recognition",
            timeout_s=timeout_s,
            session_factory=session_factory,
        )
        self._model = model
        self._max_bytes = int(max_utterance_s * ENGINE_SAMPLE_RATE) * _BYTES_PER_SAMPLE
        self._extra_fields = dict(extra_fields or {})

    async def close(self) -> None:
        await self._http.close()

    async def open_stream(self, *, language: str, hints: Sequence[str] = ()) -> AsrStream:
        return _BufferedUtterance(self, language=language, hints=hints)

    async def _transcribe(self, pcm16k: bytes, language: str, hints: Sequence[str]) -> str:
        form = aiohttp.FormData()
        form.add_field("file", _wav(pcm16k), filename="utterance.wav", content_type="audio/wav")
        form.add_field("model", self._model)
        form.add_field("response_format", "json")
        code = language.split("-")[0].split("_")[0].lower()
        if code and code != "auto":
            form.add_field("language", code)
        if hints:
            form.add_field("prompt", ", ".join(hints)[:MAX_PROMPT_CHARS])
        for name, value in self._extra_fields.items():
            form.add_field(name, value)
        async with self._http.post("/audio/transcriptions", form=form) as response:
            result: Any = await self._http.read_json(response)
        text = result.get("text") if isinstance(result, dict) else None
        if not isinstance(text, str):
            raise self._http.error("the speech recognition server's answer has no text")
        return text.strip()


class _BufferedUtterance(AsrStream):
    def __init__(self, provider: OpenAiCompatibleAsr, *, language: str, hints: Sequence[str]):
        self._provider = provider
        self._language = language
        self._hints = tuple(hints)
        self._audio = bytearray()
        self._closed = False

    async def push(self, pcm16k: bytes) -> list[Transcript]:
        if self._closed:
            raise ProviderError("audio pushed to a finished or cancelled utterance")
        if len(self._audio) + len(pcm16k) > self._provider._max_bytes:
            seconds = self._provider._max_bytes // (ENGINE_SAMPLE_RATE * _BYTES_PER_SAMPLE)
            raise ProviderError(f"utterance longer than {seconds} s")
        self._audio += pcm16k
        return []

    async def finish(self) -> Transcript:
        if self._closed:
            raise ProviderError("utterance already finished or cancelled")
        self._closed = True
        audio, self._audio = bytes(self._audio), bytearray()
        if len(audio) < _BYTES_PER_SAMPLE:
            return Transcript("", is_final=True)
        text = await self._provider._transcribe(audio, self._language, self._hints)
        return Transcript(text, is_final=True)

    async def cancel(self) -> None:
        self._closed = True
        self._audio = bytearray()


def _wav(pcm16k: bytes) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(_BYTES_PER_SAMPLE)
        writer.setframerate(ENGINE_SAMPLE_RATE)
        writer.writeframes(pcm16k[: len(pcm16k) - len(pcm16k) % _BYTES_PER_SAMPLE])
    return buffer.getvalue()


# --- speech synthesis -----------------------------------------------------------------------


class OpenAiCompatibleTts(TtsProvider):
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str = "tts-1",
        default_voice: str = "alloy",
        pcm_sample_rate: int = 24_000,
        timeout_s: float = 30.0,
        idle_timeout_s: float | None = None,
        session_factory: SessionFactory = default_session,
    ) -> None:
        self._http = OpenAiHttpClient(
            base_url=base_url,
            api_key=api_key,
            service="speech synthesis",
            timeout_s=timeout_s,
            idle_timeout_s=idle_timeout_s,
            session_factory=session_factory,
        )
        self._model = model
        self._default_voice = default_voice
        self._pcm_sample_rate = pcm_sample_rate

    async def close(self) -> None:
        await self._http.close()

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncGenerator[bytes, None]:
        if not text.strip():
            return
        body: dict[str, Any] = dict(voice.options)
        body.update(
            model=self._model,
            input=text,
            voice=voice.voice or self._default_voice,
            response_format="pcm",
            speed=voice.speed,
        )
        resampler = LinearResampler(self._pcm_sample_rate, ENGINE_SAMPLE_RATE)
        async with self._http.post("/audio/speech", json_body=body, accept="*/*") as response:
            if response.content_type in ("application/json", "text/plain", "text/html"):
                raise self._http.error(
                    f"the speech synthesis server answered {response.content_type}, not audio"
                )
            async for chunk in response.content.iter_any():
                pcm = resampler.process(chunk)
                if pcm:
                    yield pcm
        tail = resampler.flush()
        if tail:
            yield tail


class LinearResampler:
    """Streaming sample-rate conversion of 16-bit mono PCM by linear interpolation.

    Positions are kept as exact integers (in units of ``1 / to_rate`` input samples), so long
    streams do not drift. Chunks may split samples (odd byte counts): the odd byte waits.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError("sample rates must be positive")
        # Reduced by their gcd (24 kHz → 16 kHz becomes 3 → 2): small exact integers.
        divisor = math.gcd(from_rate, to_rate)
        self._from_rate = from_rate // divisor
        self._to_rate = to_rate // divisor
        self._position = 0  # next output sample, in 1/to_rate input samples from _pending[0]
        self._pending = array("h")
        self._odd_byte = b""

    def process(self, pcm: bytes) -> bytes:
        data = self._odd_byte + pcm
        cut = len(data) - len(data) % _BYTES_PER_SAMPLE
        self._odd_byte = data[cut:]
        samples = array("h")
        samples.frombytes(data[:cut])
        if sys.byteorder == "big":
            samples.byteswap()
        if self._from_rate == self._to_rate == 1:
            return _to_bytes(samples)
        pending = self._pending + samples
        step, unit = self._from_rate, self._to_rate
        targets = range(self._position, (len(pending) - 1) * unit, step)
        out = array(
            "h",
            [
                pending[p // unit]
                + (pending[p // unit + 1] - pending[p // unit]) * (p % unit) // unit
                for p in targets
            ],
        )
        position = self._position + len(targets) * step
        consumed = min(position // unit, len(pending))
        self._pending = pending[consumed:]
        self._position = position - consumed * unit
        return _to_bytes(out)

    def flush(self) -> bytes:
        """The output samples that fall on the last input sample (end of stream)."""
        out = array("h")
        if self._pending and self._position == 0:
            out.append(self._pending[0])
        self._pending = array("h")
        self._position = 0
        self._odd_byte = b""
        return _to_bytes(out)


def _to_bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()
