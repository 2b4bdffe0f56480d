"""Connection-level behaviour: upgrade refusals, credential checks, the per-IP connect limit,
origin checks, graceful shutdown and WebSocket keepalive, over real sockets.

Tests that need a particular configuration start their own server; the credential checks share
one (in the module's event loop) to keep the suite fast.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.integration.conftest import DEMO_PUBLISHABLE_KEY, app_config
from tests.support.server import DEMO_APP_TOML, ServerProcess, running_server
from tests.support.tokens import mint_token
from tests.support.ws_client import Connector, RawClient

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_server() -> AsyncIterator[ServerProcess]:
    async with running_server(app_config(server="connect_attempts_per_ip = 0")) as server:
        yield server


@pytest.fixture
def connect(session: aiohttp.ClientSession, shared_server: ServerProcess) -> Connector:
    return Connector(session, shared_server)


async def _refused_upgrade(
    session: aiohttp.ClientSession,
    server: ServerProcess,
    query: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Send a WebSocket upgrade request expected to be refused; return (status, body)."""
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **(headers or {}),
    }
    async with session.get(f"{server.http_url}/v1?{query}", headers=upgrade) as response:
        assert response.status != 101, "the upgrade was accepted"
        return response.status, await response.text()


async def _still_alive(client: RawClient) -> None:
    await client.send({"type": "ping"})
    assert await client.next_of_type("pong") == {"type": "pong"}


async def test_connect_attempts_per_ip_limit_answers_429(
    session: aiohttp.ClientSession,
) -> None:
    async with running_server(app_config(server="connect_attempts_per_ip = 3")) as server:
        connect = Connector(session, server)
        admitted = [await connect.open() for _ in range(3)]
        assert await _refused_upgrade(session, server, f"key={DEMO_PUBLISHABLE_KEY}") == (
            429,
            "too_many_connections",
        )
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect.open()
        assert refused.value.status == 429
        for client in admitted:
            await _still_alive(client)


async def test_origin_check(session: aiohttp.ClientSession) -> None:
    config = app_config(allowed_origins='["https://app.example"]')
    async with running_server(config) as server:
        query = f"key={DEMO_PUBLISHABLE_KEY}"
        foreign = {"Origin": "https://evil.example"}
        assert await _refused_upgrade(session, server, query, foreign) == (
            401,
            "origin_not_allowed",
        )
        connect = Connector(session, server)
        allowed = await connect.open(headers={"Origin": "https://app.example"})
        without_origin = await connect.open()
        await _still_alive(allowed)
        await _still_alive(without_origin)


def _bad_credentials() -> dict[str, str]:
    token, _ = mint_token("mallory")
    forged, _ = mint_token("mallory", secret="not-the-secret")
    unknown_kid, _ = mint_token("mallory", kid="sk_id_nope")
    return {
        "key-and-token": f"key={DEMO_PUBLISHABLE_KEY}&token={token}",
        "neither": "",
        "unknown-key": "key=pk_live_nope",
        "bad-signature": f"token={forged}",
        "unknown-kid": f"token={unknown_kid}",
    }


@pytest.mark.parametrize("case", list(_bad_credentials()))
async def test_bad_credentials_close_4001_before_welcome(connect: Connector, case: str) -> None:
    client = await connect.open(_bad_credentials()[case], welcome=False)
    code, frames = await client.until_closed()
    assert (code, frames) == (4001, [])


async def test_expired_token_closes_4002_at_connect(connect: Connector) -> None:
    token, _ = mint_token("late", expires_in_s=-60)
    client = await connect.open(f"token={token}", welcome=False)
    assert await client.until_closed() == (4002, [])


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "no-kid"])
async def test_malformed_token_is_refused_at_the_upgrade(
    session: aiohttp.ClientSession, shared_server: ServerProcess, token: str
) -> None:
    if token == "no-kid":
        token, _ = mint_token("x", kid="")
    status, body = await _refused_upgrade(session, shared_server, f"token={token}")
    assert (status, body) == (401, "invalid_token")
    # The server is unharmed.
    client = await Connector(session, shared_server).open()
    await _still_alive(client)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
async def test_graceful_shutdown_sends_going_away_then_1001(
    session: aiohttp.ClientSession, stop_signal: signal.Signals
) -> None:
    async with running_server(app_config()) as server:
        connect = Connector(session, server)
        clients = [await connect.open() for _ in range(3)]
        for client in clients:
            await client.subscribe("room-1")
        endings = [asyncio.create_task(client.until_closed(timeout_s=30)) for client in clients]
        exit_code = await server.stop(stop_signal, timeout_s=30)
        results = await asyncio.gather(*endings)
    assert exit_code == 0
    for code, frames in results:
        assert code == 1001
        going_away = [f for f in frames if f["type"] == "going_away"]
        assert len(going_away) == 1
        assert going_away[0]["retryAfterMs"] > 0


async def test_keepalive_drops_a_client_that_never_answers_pings(
    session: aiohttp.ClientSession,
) -> None:
    config = app_config(server="keepalive_interval_s = 0.5\nkeepalive_timeout_s = 0.5")
    async with running_server(config) as server:
        connect = Connector(session, server)
        member = await connect.open()
        await member.subscribe("room-1")
        silent = await connect.open(autoping=False)
        await silent.subscribe("room-1")
        silent_id = silent.welcome["peerId"]
        joined = await member.next_of_type("presence")
        assert [p["peerId"] for p in joined["joined"]] == [silent_id]
        # From here on nobody reads the silent client, so it never answers a ping again; the
        # member keeps reading, and aiohttp answers its pings.
        left = await member.next_matching(
            lambda f: f["type"] == "presence" and f["left"], timeout_s=30
        )
        assert [p["peerId"] for p in left["left"]] == [silent_id]
        await _still_alive(member)


async def test_the_listen_backlog_is_the_configured_one() -> None:
    # ss shows a listening socket's backlog as its Send-Q.
    async with running_server("[server]\nbacklog = 77\n" + DEMO_APP_TOML) as server:
        process = await asyncio.create_subprocess_exec(
            "ss", "-Hltn", f"sport = :{server.port}", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), 10)
    (line,) = out.decode().splitlines()
    assert line.split()[2] == "77", line
