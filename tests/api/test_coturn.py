"""A real coturn (``use-auth-secret``) accepts the TURN credentials inside a minted token.

An aiortc peer configured with the token's iceServers and a relay-only policy gathers a relay
candidate only if coturn accepted the username and HMAC password Hubbub generated.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api.conftest import TURN_SECRET, api_client, serve, ws_connect

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("turnserver") is None,
        reason="coturn is not installed (apt-get install coturn; .ci/run installs it)",
    ),
]

READY_LINE = b"Total General servers"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def coturn(shared_secret: str) -> AsyncIterator[int]:
    """turnserver on loopback, no config file, no daemon, no TLS/DTLS; yields its port."""
    port = _free_udp_port()
    with tempfile.TemporaryDirectory(prefix="hubbub-coturn-") as tmp:
        process = await asyncio.create_subprocess_exec(
            "turnserver",
            "-n",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--use-auth-secret",
            f"--static-auth-secret={shared_secret}",
            "--realm=hubbub.test",
            "--log-file=stdout",
            "--simple-log",
            f"--pidfile={tmp}/turnserver.pid",
            f"--userdb={tmp}/turndb",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        drain: asyncio.Task[bytes] | None = None
        try:
            async with asyncio.timeout(15):
                while READY_LINE not in (line := await process.stdout.readline()):
                    assert line, "turnserver exited before it was ready"
            drain = asyncio.create_task(process.stdout.read())
            yield port
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 5)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            if drain is not None:
                await drain


async def _relay_candidates(ice_servers: list[dict[str, Any]]) -> list[str]:
    from aiortc import (
        RTCConfiguration,
        RTCIceServer,
        RTCIceTransportPolicy,
        RTCPeerConnection,
    )

    configuration = RTCConfiguration(
        iceServers=[
            RTCIceServer(
                urls=server["urls"],
                username=server.get("username"),
                credential=server.get("credential"),
            )
            for server in ice_servers
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )
    pc = RTCPeerConnection(configuration)
    try:
        pc.createDataChannel("probe")
        await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), 20)
        sdp = pc.localDescription.sdp
        return [line for line in sdp.splitlines() if "typ relay" in line]
    finally:
        await pc.close()


def _turn_only(servers: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    """The token's TURN entries, pointed at the test's coturn port."""
    return [
        {**server, "urls": [f"turn:127.0.0.1:{port}?transport=udp"]}
        for server in servers
        if "username" in server
    ]


async def test_a_minted_tokens_turn_credentials_get_a_relay_candidate() -> None:
    async with serve() as served, api_client(served) as api, coturn(TURN_SECRET) as port:
        reply = await api.call("POST", "/v1/tokens", {"peerId": "webrtc-peer"})
        ws, welcome = await ws_connect(api.session, served, f"token={reply.body['token']}")
        await ws.close()
        servers = _turn_only(welcome["metadata"]["iceServers"], port)
        assert servers and servers[0]["username"].endswith(":webrtc-peer")
        relays = await _relay_candidates(servers)
        assert relays, "coturn refused the credentials: no relay candidate"
        assert all(" 127.0.0.1 " in line for line in relays)

        # The control: a credential made with the wrong secret gets no relay at all.
        forged = [{**servers[0], "credential": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}]
        assert await _relay_candidates(forged) == []
