"""The official Python SDK (``metered-realtime`` 1.0.2) against a real server.

Two ``MeteredPeer``s meet in a room through Hubbub's presence and ``send``/``direct`` relay,
negotiate a WebRTC connection with aiortc and talk over a DataChannel, both ways.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from metered_realtime import (
    Connected,
    DataChannel,
    DataChannelOpened,
    DCMessage,
    DCOpen,
    Direct,
    Message,
    MeteredPeer,
    PeerJoined,
    ServerRequestError,
    SignallingClient,
    SubscribeOptions,
)

from tests.integration.conftest import DEMO_PUBLISHABLE_KEY, WAIT_S
from tests.support.server import ServerProcess
from tests.support.tokens import mint_token

pytestmark = pytest.mark.integration

# WebRTC setup on a loaded machine (DTLS, SCTP) takes a few seconds; be generous.
WEBRTC_WAIT_S = 45.0


def _host_candidates_only(_ice_servers: object) -> RTCPeerConnection:
    # Hubbub's welcome carries no iceServers, and aiortc would then fall back to a public STUN
    # server. The tests stay on this machine: host candidates only.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def _next(stream: Any, timeout_s: float = WAIT_S) -> Any:
    async with asyncio.timeout(timeout_s):
        return await anext(stream)


async def _open_data_channel(channel: DataChannel, opened: Any) -> None:
    if channel.ready_state != "open":
        await _next(opened, WEBRTC_WAIT_S)


async def test_two_metered_peers_exchange_data_channel_messages(
    demo_server: ServerProcess,
) -> None:
    room = f"call-{uuid.uuid4().hex[:8]}"
    alice = MeteredPeer(
        api_key=DEMO_PUBLISHABLE_KEY, url=demo_server.ws_url, _pc_factory=_host_candidates_only
    )
    bob = MeteredPeer(
        api_key=DEMO_PUBLISHABLE_KEY, url=demo_server.ws_url, _pc_factory=_host_candidates_only
    )
    alice_sees = alice.events(PeerJoined)
    bob_sees = bob.events(PeerJoined)
    try:
        await alice.join(room)
        await bob.join(room)
        # alice hears of bob from a presence delta, bob of alice from his snapshot.
        bob_at_alice = (await _next(alice_sees)).peer
        alice_at_bob = (await _next(bob_sees)).peer
        assert bob_at_alice.id == bob.peer_id
        assert alice_at_bob.id == alice.peer_id

        incoming = bob_at_alice.events(DataChannelOpened)
        bob_channel = DataChannel(alice_at_bob.create_data_channel("chat"))
        bob_opened = bob_channel.events(DCOpen)
        bob_inbox = bob_channel.events(DCMessage)
        # The offer, answer and ICE candidates all travel through Hubbub as send → direct.
        alice_channel = DataChannel((await _next(incoming, WEBRTC_WAIT_S)).channel)
        alice_opened = alice_channel.events(DCOpen)
        alice_inbox = alice_channel.events(DCMessage)
        await _open_data_channel(bob_channel, bob_opened)
        await _open_data_channel(alice_channel, alice_opened)
        assert alice_channel.label == "chat"

        await bob_channel.send("hello from bob")
        assert (await _next(alice_inbox, WEBRTC_WAIT_S)).data == "hello from bob"
        await alice_channel.send("hello from alice")
        assert (await _next(bob_inbox, WEBRTC_WAIT_S)).data == "hello from alice"
    finally:
        await asyncio.gather(alice.close(), bob.close())


async def test_signalling_client_publish_and_direct_round_trip(
    demo_server: ServerProcess,
) -> None:
    room = f"room-{uuid.uuid4().hex[:8]}"
    metadata = {"name": "Ada"}
    token, _ = mint_token("ada", peerMetadata=metadata)

    async def provide_token() -> str:
        return token

    ada = SignallingClient(token_provider=provide_token, url=demo_server.ws_url)
    grace = SignallingClient(api_key=DEMO_PUBLISHABLE_KEY, url=demo_server.ws_url)
    ada_messages, ada_directs = ada.events(Message), ada.events(Direct)
    grace_messages, grace_directs = grace.events(Message), grace.events(Direct)
    grace_connected = grace.events(Connected)
    try:
        await asyncio.gather(ada.connect(), grace.connect())
        grace_id = (await _next(grace_connected)).peer_id
        await ada.subscribe(room)
        await grace.subscribe(room, SubscribeOptions(include_sender_metadata=True))

        await ada.publish(room, {"n": 1})
        message = await _next(grace_messages)
        assert (message.channel, message.sender_peer_id, message.data) == (room, "ada", {"n": 1})
        assert message.sender_metadata == metadata

        await grace.publish(room, {"n": 2})
        reply = await _next(ada_messages)
        assert (reply.sender_peer_id, reply.data, reply.sender_metadata) == (
            grace_id,
            {"n": 2},
            None,
        )

        await ada.send(grace_id, {"direct": "to grace"})
        direct = await _next(grace_directs)
        assert (direct.sender_peer_id, direct.data) == ("ada", {"direct": "to grace"})
        await grace.send("ada", {"direct": "to ada"})
        back = await _next(ada_directs)
        assert (back.sender_peer_id, back.data) == (grace_id, {"direct": "to ada"})

        with pytest.raises(ServerRequestError) as refused:
            await ada.send("nobody-home", {"x": 1})
        assert refused.value.code == "peer_not_found"
    finally:
        await asyncio.gather(ada.close(), grace.close())
