from __future__ import annotations

import io
import math
import random
import struct
import warnings
import wave

import numpy as np
import pytest

from hubbub.conversation.voice.audio import (
    FORMATS,
    AudioFormatError,
    ClientToEngine,
    EngineToClient,
    alaw_decode,
    alaw_encode,
    mulaw_decode,
    mulaw_encode,
    parse_format,
    parse_wav_header,
    pcm16_to_samples,
    samples_to_pcm16,
)

RATE = 16_000


def tones(seconds: float = 1.0, freqs: tuple[int, ...] = (300, 1000, 2500)) -> np.ndarray:
    """A band-limited test signal (all energy below 4 kHz, so even pcm_8000 can carry it)."""
    t = np.arange(int(RATE * seconds)) / RATE
    signal = sum(np.sin(2 * math.pi * f * t + f) for f in freqs) / len(freqs)
    return np.rint(signal * 0.5 * 32767).astype(np.int16)


def snr_db(reference: np.ndarray, received: np.ndarray, max_lag: int = 800) -> float:
    """Best SNR over small delays (codecs and filters may shift the signal), edges ignored."""
    margin = 1600
    ref = reference.astype(np.float64)[margin:-margin]
    best = -math.inf
    for lag in range(-max_lag, max_lag + 1):
        start = margin + lag
        got = received.astype(np.float64)[start : start + len(ref)]
        if len(got) < len(ref):
            continue
        noise = np.sum((ref - got) ** 2)
        best = max(best, 10 * math.log10(np.sum(ref**2) / max(noise, 1e-9)))
    return best


def round_trip(name: str, pcm: bytes) -> np.ndarray:
    out, back = EngineToClient(name), ClientToEngine(name)
    chunks = [*out.convert(pcm), *out.flush()]
    decoded = b"".join(back.convert(chunk) for chunk in chunks) + back.flush()
    return pcm16_to_samples(decoded)


# Stated error bounds for one round trip engine → client format → engine (measured values
# are well above these; they would catch a broken table, filter or codec setup).
SNR_BOUNDS_DB = {
    "pcm_8000": 40.0,
    "pcm_16000": math.inf,
    "pcm_22050": 60.0,
    "pcm_24000": 60.0,
    "pcm_44100": 60.0,
    "pcm_48000": 60.0,
    "mulaw": 30.0,
    "alaw": 30.0,
    "opus": 10.0,
}


def test_every_protocol_format_is_known_with_its_rate() -> None:
    assert set(FORMATS) == set(SNR_BOUNDS_DB)
    assert parse_format("pcm_22050").sample_rate == 22050
    assert parse_format("mulaw").sample_rate == 8000
    assert parse_format("pcm_48000").bytes_per_second == 96000
    assert parse_format("alaw").bytes_per_second == 8000
    assert parse_format("opus").bytes_per_second is None


@pytest.mark.parametrize("name", ["pcm_11025", "PCM_16000", "", "wav"])
def test_unknown_format_is_a_documented_error(name: str) -> None:
    with pytest.raises(AudioFormatError, match="Unsupported audio format"):
        parse_format(name)
    with pytest.raises(AudioFormatError):
        ClientToEngine(name)


@pytest.mark.parametrize("name", sorted(SNR_BOUNDS_DB))
def test_round_trip_within_stated_error(name: str) -> None:
    signal = tones()
    received = round_trip(name, samples_to_pcm16(signal))
    # Resamplers and codecs keep the duration (Opus pads to whole 20 ms frames).
    assert abs(len(received) - len(signal)) <= 2 * 320
    snr = snr_db(signal, received)
    print(f"{name}: round-trip SNR {snr:.1f} dB")
    if math.isinf(SNR_BOUNDS_DB[name]):
        assert np.array_equal(received, signal)
    else:
        assert snr >= SNR_BOUNDS_DB[name]


def _random_cuts(data: bytes, rng: random.Random) -> list[bytes]:
    cuts, i = [], 0
    while i < len(data):
        size = rng.choice([1, 3, 7, 160, 333, 641, 2049])  # odd sizes split samples in two
        cuts.append(data[i : i + size])
        i += size
    return cuts


@pytest.mark.parametrize("name", sorted(n for n in SNR_BOUNDS_DB if n != "opus"))
def test_chunked_conversion_equals_whole(name: str) -> None:
    rng = random.Random(name)
    pcm = samples_to_pcm16(tones(0.5))

    whole_out = EngineToClient(name)
    whole = b"".join([*whole_out.convert(pcm), *whole_out.flush()])
    chunked_out = EngineToClient(name)
    chunked_parts = [c for cut in _random_cuts(pcm, rng) for c in chunked_out.convert(cut)]
    chunked = b"".join([*chunked_parts, *chunked_out.flush()])
    assert chunked == whole

    whole_in = ClientToEngine(name)
    back_whole = whole_in.convert(whole) + whole_in.flush()
    chunked_in = ClientToEngine(name)
    back_chunked = b"".join(chunked_in.convert(cut) for cut in _random_cuts(whole, rng))
    back_chunked += chunked_in.flush()
    assert back_chunked == back_whole


def test_opus_packets_are_20ms_and_independent_of_input_chunking() -> None:
    pcm = samples_to_pcm16(tones(0.5))
    whole_encoder = EngineToClient("opus")
    whole = [*whole_encoder.convert(pcm), *whole_encoder.flush()]
    chunked_encoder = EngineToClient("opus")
    chunked = [
        packet
        for cut in _random_cuts(pcm, random.Random(1))
        for packet in chunked_encoder.convert(cut)
    ]
    chunked += chunked_encoder.flush()
    assert chunked == whole
    assert 25 <= len(whole) <= 28  # 0.5 s in 20 ms packets, plus the encoder's tail
    assert all(0 < len(packet) <= 1150 for packet in whole)


def test_invalid_opus_packet_is_a_format_error() -> None:
    decoder = ClientToEngine("opus")
    with pytest.raises(AudioFormatError, match="Invalid Opus packet"):
        decoder.convert(b"\xff\xff\xff\xff\xff\xff\xff")
    # The decoder is still usable afterwards.
    packets = EngineToClient("opus").convert(samples_to_pcm16(tones(0.2)))
    assert sum(len(decoder.convert(packet)) for packet in packets) > 0


def test_g711_known_codes() -> None:
    zero = np.zeros(1, dtype=np.int16)
    assert mulaw_encode(zero) == b"\xff"
    assert alaw_encode(zero) == b"\xd5"
    extremes = np.array([32767, -32768], dtype=np.int16)
    assert mulaw_encode(extremes) == b"\x80\x00"
    assert alaw_encode(extremes) == b"\xaa\x2a"
    assert mulaw_decode(b"\x80\x00").tolist() == [32124, -32124]
    assert alaw_decode(b"\xaa\x2a").tolist() == [32256, -32256]


def test_g711_codes_survive_decode_then_encode() -> None:
    codes = bytes(range(256))
    assert alaw_encode(alaw_decode(codes)) == codes
    # mu-law has two codes for zero (0x7F and 0xFF); encoding picks 0xFF.
    assert mulaw_encode(mulaw_decode(codes)) == codes.replace(b"\x7f", b"\xff")


def test_g711_matches_the_reference_codec_on_every_sample() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # removed in Python 3.13; a reference before
    every = np.arange(-32768, 32768, dtype=np.int16)
    pcm = samples_to_pcm16(every)
    codes = bytes(range(256))
    assert mulaw_encode(every) == audioop.lin2ulaw(pcm, 2)
    assert alaw_encode(every) == audioop.lin2alaw(pcm, 2)
    assert samples_to_pcm16(mulaw_decode(codes)) == audioop.ulaw2lin(codes, 2)
    assert samples_to_pcm16(alaw_decode(codes)) == audioop.alaw2lin(codes, 2)


def _wav(
    rate: int = 22050, channels: int = 1, width: int = 2, frames: bytes = b"\x01\x00"
) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return buffer.getvalue()


def test_wav_header_of_a_standard_file() -> None:
    data = _wav(frames=b"\x01\x00\x02\x00")
    rate, offset = parse_wav_header(data) or (0, 0)
    assert rate == 22050 and data[offset:] == b"\x01\x00\x02\x00"


def test_wav_header_needs_more_bytes_until_the_data_chunk() -> None:
    data = _wav()
    for cut in range(0, 44):
        assert parse_wav_header(data[:cut]) is None


def test_streamed_wav_with_placeholder_sizes_and_extra_chunks() -> None:
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 24000, 48000, 2, 16)
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\x00"  # odd size: padded
    header = b"RIFF" + b"\xff\xff\xff\xff" + b"WAVE" + fmt + extra + b"data\xff\xff\xff\xff"
    assert parse_wav_header(header + b"\x05\x00") == (24000, len(header))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFX\x00\x00\x00\x00WAVEfmt ", "Not a WAV stream"),
        (_wav(channels=2, frames=b"\x00" * 4), "16-bit mono"),
        (_wav(width=1), "16-bit mono"),
        (b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00", "data before its fmt"),
        (b"RIFF\x00\x00\x00\x00WAVE" + b"junk" + struct.pack("<I", 5000) + bytes(5000), "No WAV"),
    ],
)
def test_wav_header_errors(data: bytes, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        parse_wav_header(data)
