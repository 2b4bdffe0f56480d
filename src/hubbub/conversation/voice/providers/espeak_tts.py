"""Fallback speech synthesis with the ``espeak-ng`` program (Debian package ``espeak-ng``).

Robotic but tiny and instant. One subprocess per synthesis: the text goes in on stdin (so it
can never be taken for an option), a WAV stream comes out on stdout and is resampled to
16 kHz as it arrives. Cancelling kills the process.
"""

from __future__ import annotations

import asyncio
import shutil
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
    ProviderError,
    TtsProvider,
    VoiceSettings,
)

ESPEAK_BINARY: Final = "espeak-ng"
DEFAULT_VOICE: Final = "en-us"
DEFAULT_WORDS_PER_MINUTE: Final = 175
_READ_BYTES: Final = 4096


def espeak_available(binary: str = ESPEAK_BINARY) -> bool:
    return shutil.which(binary) is not None


class EspeakTts(TtsProvider):
    def __init__(self, *, binary: str = ESPEAK_BINARY) -> None:
        self._binary = binary
        self.last_process: asyncio.subprocess.Process | None = None  # for tests and metrics

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[bytes]:
        words_per_minute = max(80, min(450, round(DEFAULT_WORDS_PER_MINUTE * voice.speed)))
        try:
            process = await asyncio.create_subprocess_exec(
                self._binary,
                "--stdout",
                "-b",
                "1",  # stdin is UTF-8
                "-v",
                voice.voice or DEFAULT_VOICE,
                "-s",
                str(words_per_minute),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise ProviderError(f"espeak-ng: cannot start: {exc}") from exc
        self.last_process = process
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(text.encode("utf-8"))
            await process.stdin.drain()
            process.stdin.close()
            sample_rate, leftover = await _read_wav_header(process.stdout)
            resampler = Resampler(sample_rate, ENGINE_SAMPLE_RATE)
            carry = leftover
            while chunk := await process.stdout.read(_READ_BYTES):
                data = carry + chunk
                usable = len(data) - len(data) % 2
                carry = data[usable:]
                pcm = samples_to_pcm16(resampler.process(pcm16_to_samples(data[:usable])))
                if pcm:
                    yield pcm
            tail = samples_to_pcm16(resampler.flush())
            if tail:
                yield tail
            if await process.wait() != 0:
                raise ProviderError(f"espeak-ng: exited with status {process.returncode}")
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ProviderError("espeak-ng: process ended early") from exc
        finally:
            if process.returncode is None:
                process.kill()
                await asyncio.shield(process.wait())


async def _read_wav_header(stream: asyncio.StreamReader) -> tuple[int, bytes]:
    """The sample rate, and any audio bytes read past the header."""
    buffer = b""
    while True:
        try:
            parsed = parse_wav_header(buffer)
        except AudioFormatError as exc:
            raise ProviderError(f"espeak-ng: {exc}") from exc
        if parsed is not None:
            sample_rate, data_offset = parsed
            return sample_rate, buffer[data_offset:]
        chunk = await stream.read(_READ_BYTES)
        if not chunk:
            raise ProviderError("espeak-ng: produced no audio")
        buffer += chunk
