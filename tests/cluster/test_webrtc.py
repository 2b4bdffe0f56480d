"""Two MeteredPeers on different nodes open a WebRTC DataChannel signalled through the cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from metered_realtime import DataChannelOpened, MeteredPeer, PeerJoined

from tests.cluster.conftest import demo_token
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


def token_for(peer_id: str) -> Any:
    async def provide() -> str:
        return demo_token(peer_id)

    return provide


async def test_datachannel_between_peers_on_two_nodes(cluster: list[ServerProcess]) -> None:
    a, b, _ = cluster
    loop = asyncio.get_running_loop()
    received: asyncio.Future[str] = loop.create_future()
    offerer_joined: asyncio.Future[Any] = loop.create_future()

    answerer = MeteredPeer(url=b.ws_url, token_provider=token_for("answerer"), reconnect=False)
    offerer = MeteredPeer(url=a.ws_url, token_provider=token_for("offerer"), reconnect=False)

    def on_channel(event: DataChannelOpened) -> None:
        event.channel.on("message", lambda text: received.done() or received.set_result(text))

    def on_answerer_sees(event: PeerJoined) -> None:
        event.peer.on(DataChannelOpened, on_channel)

    def on_offerer_sees(event: PeerJoined) -> None:
        if not offerer_joined.done():
            offerer_joined.set_result(event.peer)

    answerer.on(PeerJoined, on_answerer_sees)
    offerer.on(PeerJoined, on_offerer_sees)
    try:
        await answerer.join("call")
        await offerer.join("call")
        async with asyncio.timeout(30):
            remote = await offerer_joined
            channel = remote.create_data_channel("chat")
            opened: asyncio.Future[None] = loop.create_future()
            channel.on("open", lambda: opened.done() or opened.set_result(None))
            if channel.readyState != "open":
                await opened
            channel.send("hello across nodes")
            assert await received == "hello across nodes"
    finally:
        await offerer.close()
        await answerer.close()
