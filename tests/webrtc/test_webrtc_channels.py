"""The spec's WebRTC flow against a recording session: control JSON both ways, binary audio
frames both ways, pacing, gating on start_ai_generation_output, dropping, and closing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hubbub.protocol.audio_frame import MAX_AUDIO_BYTES_PER_FRAME, encode_audio_frame

from .conftest import TIMEOUT_S, Client, ServerFactory, WebRtcServer, wait_until

pytestmark = pytest.mark.integration


async def test_control_carries_json_both_ways(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(server.offer_url)
    handler = await server.sessions.first()
    assert handler.channel.kind == "webrtc"
    assert handler.channel.client_ip == "127.0.0.1"
    client.send({"type": "echo", "n": 1})
    client.send({"type": "echo", "n": 2})
    assert await client.receive() == {"type": "echo", "payload": {"type": "echo", "n": 1}}
    assert await client.receive() == {"type": "echo", "payload": {"type": "echo", "n": 2}}
    assert handler.messages == ['{"type": "echo", "n": 1}', '{"type": "echo", "n": 2}']


async def test_inbound_frames_reach_handle_audio_and_malformed_are_dropped(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(server.offer_url)
    handler = await server.sessions.first()
    assert client.audio is not None
    malformed = [b"", b"\x05", b"\x09\x00short", b"\x02\x00\xff\xfe", "text is not a frame"]
    for bad in malformed:
        client.audio.send(bad)
    for i in range(5):
        client.audio.send(encode_audio_frame("tinp_1", bytes([i]) * 640))
    await wait_until(lambda: handler.audio_bytes >= 5 * 640, handler.audio_changed)
    assert handler.audio == [("tinp_1", bytes([i]) * 640) for i in range(5)]
    (peer,) = server.endpoint.peers
    # b"" is not sent by aiortc as a message at all; the other four reach the server.
    assert peer.dropped_audio_frames >= 4
    # The control channel is unaffected.
    client.send({"type": "echo"})
    assert (await client.receive())["type"] == "echo"


async def test_outbound_voice_is_framed_and_paced_in_real_time(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(server.offer_url)
    client.send({"type": "speak", "turn": "tout_1", "ms": 1000, "chunk_ms": 70})
    await client.wait_frames(lambda frames: len(frames) >= 50)
    frames = client.frames
    assert len(frames) == 50
    assert all(f.frame.turn_id == "tout_1" for f in frames)
    assert all(len(f.frame.audio) == 640 for f in frames)  # 20 ms of pcm_16000
    assert all(len(f.frame.audio) <= MAX_AUDIO_BYTES_PER_FRAME for f in frames)
    assert b"".join(f.frame.audio for f in frames)[:2240] == bytes([0]) * 2240  # in order
    elapsed_s = frames[-1].at_s - frames[0].at_s
    assert 0.75 <= elapsed_s <= 1.6, elapsed_s  # 49 frame intervals of 20 ms = 0.98 s


async def test_voice_never_precedes_its_start_message(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(server.offer_url)
    # The handler queues the voice first and start_ai_generation_output after it.
    client.send({"type": "speak", "turn": "tout_1", "ms": 100, "early": True})
    await client.wait_frames(lambda frames: len(frames) >= 5)
    kinds = [kind for kind, _ in client.events]
    assert kinds[0] == "control"
    assert client.events[0][1]["type"] == "start_ai_generation_output"
    assert kinds[1:] == ["audio"] * 5


async def test_aborted_turn_audio_is_dropped(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(server.offer_url)
    client.send({"type": "speak", "turn": "tout_1", "ms": 3000})
    await client.wait_frames(lambda frames: len(frames) >= 3)
    client.send({"type": "abort", "turn": "tout_1"})
    while (await client.receive())["type"] != "abort_ai_generation_output":
        pass
    at_abort = len(client.frames)
    client.send({"type": "speak", "turn": "tout_2", "ms": 200})
    await client.wait_frames(lambda frames: any(f.frame.turn_id == "tout_2" for f in frames))
    late = [f for f in client.frames[at_abort:] if f.frame.turn_id == "tout_1"]
    assert len(late) <= 3  # at most what was already in flight
    assert len(client.frames) < 150


async def test_a_newer_turn_supersedes_queued_audio(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(server.offer_url)
    client.send({"type": "speak", "turn": "tout_1", "ms": 3000})
    await client.wait_frames(lambda frames: len(frames) >= 3)
    client.send({"type": "speak", "turn": "tout_2", "ms": 200})
    await client.wait_frames(lambda frames: sum(f.frame.turn_id == "tout_2" for f in frames) >= 10)
    first_new = next(i for i, f in enumerate(client.frames) if f.frame.turn_id == "tout_2")
    assert all(f.frame.turn_id == "tout_2" for f in client.frames[first_new:])
    assert first_new < 30  # far fewer than the 150 frames of tout_1


async def test_closing_control_closes_the_session_and_peer_connection(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(server.offer_url)
    handler = await server.sessions.first()
    (peer,) = server.endpoint.peers
    client.control.close()
    await asyncio.wait_for(handler.closed_event.wait(), TIMEOUT_S)
    await asyncio.wait_for(peer.until_closed(), TIMEOUT_S)
    assert handler.closed_calls == 1
    assert peer.pc.connectionState == "closed"
    assert server.endpoint.peers == frozenset()


async def test_client_peer_connection_going_away_closes_the_session(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(server.offer_url)
    handler = await server.sessions.first()
    (peer,) = server.endpoint.peers
    await client.pc.close()
    await asyncio.wait_for(handler.closed_event.wait(), TIMEOUT_S)
    await asyncio.wait_for(peer.until_closed(), TIMEOUT_S)
    assert handler.closed_calls == 1


async def test_engine_close_closes_channels_and_peer_connection(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(server.offer_url)
    handler = await server.sessions.first()
    (peer,) = server.endpoint.peers
    handler.channel.close()
    await asyncio.wait_for(client.control_closed.wait(), TIMEOUT_S)
    await asyncio.wait_for(peer.until_closed(), TIMEOUT_S)
    assert handler.closed_calls == 1
    assert peer.pc.connectionState == "closed"


async def test_one_client_closing_leaves_another_untouched(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    first, second = clients(), clients()
    await first.connect(server.offer_url)
    await second.connect(server.offer_url)
    first.control.close()
    await asyncio.wait_for(server.sessions.handlers[0].closed_event.wait(), TIMEOUT_S)
    second.send({"type": "echo"})
    assert (await second.receive())["type"] == "echo"
    assert server.sessions.handlers[1].closed_calls == 0


async def test_server_stop_closes_every_peer_connection(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(server.offer_url)
    handler = await server.sessions.first()
    await server.endpoint.close_all()
    assert handler.closed_calls == 1
    assert server.endpoint.peers == frozenset()
    await asyncio.wait_for(client.control_closed.wait(), TIMEOUT_S)


async def test_a_control_message_over_the_size_bound_closes_the_connection(
    start_server: ServerFactory, clients: Callable[..., Client]
) -> None:
    server = await start_server(peer={"max_message_bytes": 1_000})
    big, other = clients(), clients()
    await big.connect(server.offer_url)
    await other.connect(server.offer_url)
    handler = server.sessions.handlers[0]
    at_bound = '{"type": "echo", "pad": "' + "x" * (1_000 - 27) + '"}'
    assert len(at_bound) == 1_000
    big.control.send(at_bound)
    assert (await big.receive())["type"] == "echo"
    big.control.send(at_bound[:-2] + 'x"}')  # one byte more
    await asyncio.wait_for(big.control_closed.wait(), TIMEOUT_S)
    await asyncio.wait_for(handler.closed_event.wait(), TIMEOUT_S)
    assert handler.messages == [at_bound]  # the big one never reached the session
    other.send({"type": "echo"})
    assert (await other.receive())["type"] == "echo"
