"""Fallback speech synthesis with the ``espeak-ng`` program (Debian package ``espeak-ng``).

Robotic but tiny and instant. One subprocess per synthesis: the text goes in on stdin (so it
can never be taken for an option), a WAV stream comes out on stdout and is resampled to
16 kHz as it arrives. Cancelling kills the process.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
from collections.abc import AsyncIterator
from typing import Final

from hubbub.conversation.audio import Resampler, pcm16_to_samples, samples_to_pcm16
from hubbub.conversation.providers.base import (
    ENGINE_SAMPLE_RATE,
    ProviderError,
    TtsProvider,
    VoiceSettings,
)

ESPEAK_BINARY: Final = "espeak-ng"
DEFAULT_VOICE: Final = "en-us"
DEFAULT_WORDS_PER_MINUTE: Final = 175
_READ_BYTES: Final = 4096
_MAX_HEADER_BYTES: Final = 4096


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
    """Parse RIFF chunks up to ``data``; returns the sample rate and any audio bytes read."""
    buffer = b""
    while True:
        data_at = buffer.find(b"data", 12)
        if len(buffer) >= 44 and data_at >= 0 and len(buffer) >= data_at + 8:
            break
        if len(buffer) > _MAX_HEADER_BYTES:
            raise ProviderError("espeak-ng: no WAV data chunk")
        chunk = await stream.read(_READ_BYTES)
        if not chunk:
            raise ProviderError("espeak-ng: produced no audio")
        buffer += chunk
    if buffer[:4] != b"RIFF" or buffer[8:12] != b"WAVE":
        raise ProviderError("espeak-ng: output is not WAV")
    fmt_at = buffer.find(b"fmt ", 12)
    if fmt_at < 0:
        raise ProviderError("espeak-ng: WAV has no fmt chunk")
    channels, sample_rate = struct.unpack_from("<HI", buffer, fmt_at + 10)
    bits = struct.unpack_from("<H", buffer, fmt_at + 22)[0]
    if channels != 1 or bits != 16:
        raise ProviderError("espeak-ng: expected 16-bit mono WAV")
    return int(sample_rate), buffer[data_at + 8 :]
