"""Media tracks for clients that send their microphone as an audio track (``getUserMedia`` +
``addTrack``) instead of binary frames on the ``audio`` DataChannel.

Inbound: aiortc decodes the Opus track into ``av.AudioFrame``; :func:`read_microphone` turns it
into 16 kHz mono PCM16, the engine's internal format. Outbound: :class:`AiVoiceTrack` yields a
20 ms frame at a time, paced in real time by ``recv`` (aiortc's RTP sender calls it as fast as
it returns), taking AI voice from the session's :class:`OutboundVoice` and silence when idle.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Callable

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from hubbub.transports.webrtc_voice import QueuedFrame

log = logging.getLogger(__name__)

ENGINE_SAMPLE_RATE = 16_000
_SILENCE_SAMPLES = ENGINE_SAMPLE_RATE // 50  # 20 ms
_TIME_BASE = fractions.Fraction(1, ENGINE_SAMPLE_RATE)


def _pcm_of(frame: av.AudioFrame) -> bytes:
    # Packed s16 mono: the first plane holds the samples (its buffer may be padded).
    return bytes(frame.planes[0])[: frame.samples * 2]


async def read_microphone(track: MediaStreamTrack, on_pcm: Callable[[bytes], None]) -> None:
    """Feed ``on_pcm`` with the track's audio as 16 kHz mono PCM16 until the track ends."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=ENGINE_SAMPLE_RATE)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, av.AudioFrame):
            continue
        for converted in resampler.resample(frame):
            pcm = _pcm_of(converted)
            if pcm:
                on_pcm(pcm)


class AiVoiceTrack(MediaStreamTrack):
    """The AI voice as an audio track: 16 kHz mono frames, silence between turns.

    ``pull`` returns the next queued voice frame or None. Only ``pcm_*`` voice can go on a
    track; other formats are skipped (a track client should keep the default
    ``receiveAudioFormat``, ``pcm_16000``).
    """

    kind = "audio"

    def __init__(self, pull: Callable[[], QueuedFrame | None]) -> None:
        super().__init__()
        self._pull = pull
        self._start: float | None = None
        self._timestamp = 0
        self._resamplers: dict[int, av.AudioResampler] = {}

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait_s = self._start + self._timestamp / ENGINE_SAMPLE_RATE - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
        frame = self._voice_frame() or self._silence()
        frame.pts = self._timestamp
        frame.sample_rate = ENGINE_SAMPLE_RATE
        frame.time_base = _TIME_BASE
        self._timestamp += frame.samples
        return frame

    def _voice_frame(self) -> av.AudioFrame | None:
        queued = self._pull()
        while queued is not None and not queued.audio_format.startswith("pcm_"):
            queued = self._pull()
        if queued is None:
            return None
        rate = int(queued.audio_format.removeprefix("pcm_"))
        samples = len(queued.audio) // 2
        if samples == 0:
            return None
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(queued.audio[: samples * 2])
        frame.sample_rate = rate
        if rate == ENGINE_SAMPLE_RATE:
            return frame
        resampler = self._resamplers.get(rate)
        if resampler is None:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=ENGINE_SAMPLE_RATE)
            self._resamplers[rate] = resampler
        frame.pts = None
        pcm = b"".join(_pcm_of(f) for f in resampler.resample(frame))
        if not pcm:
            return None
        out = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        out.planes[0].update(pcm)
        return out

    @staticmethod
    def _silence() -> av.AudioFrame:
        frame = av.AudioFrame(format="s16", layout="mono", samples=_SILENCE_SAMPLES)
        frame.planes[0].update(bytes(_SILENCE_SAMPLES * 2))
        return frame
