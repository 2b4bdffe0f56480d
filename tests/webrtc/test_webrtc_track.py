"""Clients that send the microphone as an audio track (getUserMedia + addTrack) and hear the AI
voice on the track the answer carries."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import math
import struct
from collections.abc import Callable

import av
import pytest
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack

from .conftest import TIMEOUT_S, Client, WebRtcServer, wait_until

pytestmark = pytest.mark.integration

TONE_RATE = 48_000
TONE_SAMPLES = TONE_RATE // 50  # 20 ms


class ToneTrack(AudioStreamTrack):
    """A 440 Hz sine at 48 kHz, 20 ms per frame, paced like a microphone."""

    def __init__(self) -> None:
        super().__init__()
        self._sent = 0
        self._started: float | None = None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._started is None:
            self._started = loop.time()
        else:
            delay = self._started + self._sent / TONE_RATE - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        samples = [
            int(12_000 * math.sin(2 * math.pi * 440 * (self._sent + i) / TONE_RATE))
            for i in range(TONE_SAMPLES)
        ]
        frame = av.AudioFrame(format="s16", layout="mono", samples=TONE_SAMPLES)
        frame.planes[0].update(struct.pack(f"<{TONE_SAMPLES}h", *samples))
        frame.sample_rate = TONE_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, TONE_RATE)
        self._sent += TONE_SAMPLES
        return frame


def peak(pcm: bytes) -> int:
    count = len(pcm) // 2
    return max((abs(s) for s in struct.unpack(f"<{count}h", pcm[: count * 2])), default=0)


async def test_microphone_track_reaches_handle_audio_as_16khz_pcm(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients(audio_channel=False, track=ToneTrack())
    await client.connect(server.offer_url)
    handler = await server.sessions.first()
    # Between input turns the microphone goes to the empty turn id (server VAD listens there).
    await wait_until(lambda: handler.audio_bytes > 0, handler.audio_changed)
    assert {turn for turn, _ in handler.audio} == {""}
    client.send({"type": "start_voice"})
    reply = await client.receive()
    assert reply["inputTurnId"] == "tinp_1"

    def turn_bytes(turn: str) -> int:
        return sum(len(pcm) for t, pcm in handler.audio if t == turn)

    one_second = 32_000
    await wait_until(lambda: turn_bytes("tinp_1") >= one_second // 2, handler.audio_changed)
    assert all(len(pcm) % 2 == 0 for _, pcm in handler.audio)
    first_of_turn = next(i for i, (t, _) in enumerate(handler.audio) if t == "tinp_1")
    assert {t for t, _ in handler.audio[first_of_turn:]} == {"tinp_1"}
    # The final transcript ends the turn: audio goes back to the empty turn id.
    client.send({"type": "final_transcript"})
    await client.receive()
    await wait_until(lambda: handler.audio[-1][0] == "", handler.audio_changed)
    turns = [t for t, _ in handler.audio[first_of_turn:]]
    back_to_idle = turns.index("")
    assert set(turns[:back_to_idle]) == {"tinp_1"}
    assert set(turns[back_to_idle:]) == {""}
    pcm = b"".join(audio for turn, audio in handler.audio if turn == "tinp_1")
    assert peak(pcm) > 3_000  # the tone, not silence, survived Opus and resampling
    # Zero crossings over the last 0.25 s: 440 Hz gives ~220 (16 kHz resampling keeps pitch).
    tail = struct.unpack(f"<{4000}h", pcm[-8000:])
    crossings = sum(1 for a, b in itertools.pairwise(tail) if (a < 0) != (b < 0))
    assert 180 <= crossings <= 260, crossings


async def test_answer_carries_an_ai_voice_track(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients(audio_channel=False, track=ToneTrack())
    await client.connect(server.offer_url)
    assert len(client.remote_tracks) == 1
    voice: MediaStreamTrack = client.remote_tracks[0]
    assert voice.kind == "audio"

    async def loudest_of(frames: int) -> int:
        loudest = 0
        for _ in range(frames):
            frame = await asyncio.wait_for(voice.recv(), TIMEOUT_S)
            assert isinstance(frame, av.AudioFrame)
            resampled = av.AudioResampler(format="s16", layout="mono").resample(frame)
            loudest = max([loudest, *(peak(bytes(f.planes[0])) for f in resampled)])
        return loudest

    assert await loudest_of(10) < 200  # silence while idle
    client.send({"type": "speak", "turn": "tout_1", "ms": 2000})

    async def until_voice() -> None:
        while await loudest_of(1) < 1000:
            pass

    await asyncio.wait_for(until_voice(), TIMEOUT_S)
