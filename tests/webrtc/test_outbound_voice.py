"""OutboundVoice, without a network: gating on the turn's start, framing, dropping, bounds."""

from __future__ import annotations

from hubbub.conversation.protocol.pushes import VoiceChunk
from hubbub.protocol.audio_frame import AudioFrame, decode_audio_frame
from hubbub.transports.webrtc_voice import OutboundVoice, QueuedFrame


def chunk(
    turn: str, audio: bytes, audio_format: str = "pcm_16000", final: bool = False
) -> VoiceChunk:
    return VoiceChunk("conv_1", turn, "chnk_1", audio, audio_format, 0, final)


def drain(voice: OutboundVoice) -> list[QueuedFrame]:
    frames = []
    while (frame := voice.pop()) is not None:
        frames.append(frame)
    return frames


def test_nothing_leaves_before_the_turn_starts() -> None:
    voice = OutboundVoice()
    voice.add(chunk("tout_1", b"a" * 1280))
    assert not voice
    assert voice.pop() is None
    voice.turn_started("tout_1")
    frames = drain(voice)
    assert [len(f.audio) for f in frames] == [640, 640]
    assert all(f.duration_s == 0.02 for f in frames)


def test_frames_encode_as_binary_audio_frames() -> None:
    voice = OutboundVoice()
    voice.turn_started("tout_é")
    voice.add(chunk("tout_é", b"x" * 640))
    (frame,) = drain(voice)
    assert decode_audio_frame(frame.encode()) == AudioFrame("tout_é", b"x" * 640)


def test_final_chunk_flushes_the_short_tail() -> None:
    voice = OutboundVoice()
    voice.turn_started("tout_1")
    voice.add(chunk("tout_1", b"a" * 700))
    voice.add(chunk("tout_1", b"b" * 100, final=True))
    assert [len(f.audio) for f in drain(voice)] == [640, 160]


def test_high_rate_pcm_goes_in_10ms_frames() -> None:
    voice = OutboundVoice()
    voice.turn_started("tout_1")
    voice.add(chunk("tout_1", b"a" * 9600, "pcm_48000"))
    frames = drain(voice)
    assert [len(f.audio) for f in frames] == [960] * 10
    assert all(abs(f.duration_s - 0.01) < 1e-9 for f in frames)


def test_packetized_opus_travels_one_chunk_per_frame() -> None:
    voice = OutboundVoice()
    voice.turn_started("tout_1")
    voice.add(chunk("tout_1", b"p" * 90, "opus"))
    voice.add(chunk("tout_1", b"q" * 2000, "opus"))  # too big for one SCTP-safe frame
    voice.add(chunk("tout_1", b"", "opus"))
    assert [f.audio for f in drain(voice)] == [b"p" * 90]
    assert voice.dropped_frames == 1


def test_abort_drops_queued_and_later_audio() -> None:
    voice = OutboundVoice()
    voice.turn_started("tout_1")
    voice.add(chunk("tout_1", b"a" * 6400))
    voice.turn_aborted("tout_1")
    voice.add(chunk("tout_1", b"a" * 640))
    assert drain(voice) == []
    assert voice.dropped_frames == 10
    assert voice.queued_s == 0


def test_abort_before_start_drops_pending_audio() -> None:
    voice = OutboundVoice()
    voice.add(chunk("tout_1", b"a" * 640))
    voice.turn_aborted("tout_1")
    voice.turn_started("tout_1")
    assert drain(voice) == []


def test_a_newer_turn_supersedes_older_ones() -> None:
    voice = OutboundVoice()
    voice.turn_started("tout_1")
    voice.add(chunk("tout_1", b"a" * 6400))
    voice.turn_started("tout_2")
    voice.add(chunk("tout_2", b"b" * 640))
    voice.add(chunk("tout_1", b"a" * 640))  # late audio of the superseded turn
    assert [f.turn_id for f in drain(voice)] == ["tout_2"]


def test_queued_audio_is_bounded() -> None:
    voice = OutboundVoice(max_queued_s=0.1)
    voice.turn_started("tout_1")
    voice.add(chunk("tout_1", b"a" * 640 * 8))
    assert len(drain(voice)) == 5
    assert voice.dropped_frames == 3


def test_pending_audio_before_start_is_bounded() -> None:
    voice = OutboundVoice()
    for _ in range(1005):
        voice.add(chunk("tout_1", b"a" * 640))
    voice.turn_started("tout_1")
    assert len(drain(voice)) == 1000
    assert voice.dropped_frames == 5


def test_clear_forgets_everything() -> None:
    voice = OutboundVoice()
    voice.turn_started("tout_1")
    voice.add(chunk("tout_1", b"a" * 640))
    voice.clear()
    assert voice.pop() is None
    assert voice.queued_s == 0


def test_a_turn_counts_as_unsent_until_its_last_frame_is_written() -> None:
    voice = OutboundVoice()
    voice.turn_started("tout_1")
    voice.add(chunk("tout_1", b"a" * 1280, final=True))
    assert voice.unsent("tout_1") == 2
    first = voice.pop()
    assert first is not None
    assert voice.unsent("tout_1") == 2  # popped is not written
    voice.sent(first)
    assert voice.unsent("tout_1") == 1
    second = voice.pop()
    assert second is not None
    voice.sent(second)
    assert voice.unsent("tout_1") == 0
    assert voice.unsent("tout_unknown") == 0


def test_aborted_and_superseded_turns_have_nothing_unsent() -> None:
    voice = OutboundVoice()
    voice.turn_started("tout_1")
    voice.add(chunk("tout_1", b"a" * 1280))
    voice.turn_aborted("tout_1")
    assert voice.unsent("tout_1") == 0 and not voice.live("tout_1")
    voice.turn_started("tout_2")
    voice.add(chunk("tout_2", b"a" * 640))
    voice.turn_started("tout_3")  # supersedes tout_2
    assert voice.unsent("tout_2") == 0 and voice.live("tout_3")


def test_held_voice_waits_and_resumes_where_it_stopped() -> None:
    voice = OutboundVoice()
    voice.turn_started("tout_1")
    voice.add(chunk("tout_1", b"a" * 640 + b"b" * 640))
    first = voice.pop()
    assert first is not None and first.audio == b"a" * 640
    voice.held = True
    assert not voice and voice.pop() is None
    voice.held = False
    second = voice.pop()
    assert second is not None and second.audio == b"b" * 640
