"""Bad input over a real socket: each gets its documented error or close, and a second client
in the same channel keeps receiving every publication, in order, with nothing lost.

A *room* has three raw clients: the ``offender`` (subscribed to the channel, sends the bad
input), a ``bystander`` (subscribed, must keep receiving) and a ``publisher``. The tests on
the demo keys share one server (the module's event loop) to keep the suite fast; each room
uses its own channel and closes its clients.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.integration.conftest import app_config
from tests.support.server import ServerProcess, running_server
from tests.support.ws_client import Connector, RawClient

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

_room_numbers = itertools.count(1)


@dataclass
class Room:
    channel: str
    offender: RawClient
    bystander: RawClient
    publisher: RawClient
    published: int = 0

    async def check_delivery(self, sender: RawClient | None = None) -> None:
        """One more publication reaches the bystander, and it is the very next one."""
        self.published += 1
        n = self.published
        reply = await (sender or self.publisher).publish(self.channel, {"n": n}, f"check-{n}")
        assert reply == {"type": "ack", "requestId": f"check-{n}"}
        message = await self.bystander.next_of_type("message")
        assert message["data"] == {"n": n}, "a publication was lost or reordered"

    async def offender_left(self) -> None:
        offender_id = self.offender.welcome["peerId"]
        await self.bystander.next_matching(
            lambda f: f["type"] == "presence" and [p["peerId"] for p in f["left"]] == [offender_id]
        )


async def _open_room(connect: Connector) -> Room:
    channel = f"room-{next(_room_numbers)}"
    room = Room(channel, await connect.open(), await connect.open(), await connect.open())
    await room.bystander.subscribe(channel)
    await room.offender.subscribe(channel)
    await room.check_delivery()
    return room


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_server() -> AsyncIterator[ServerProcess]:
    # Many rooms connect to this one server: no per-IP connect limit here.
    async with running_server(app_config(server="connect_attempts_per_ip = 0")) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def room(
    shared_session: aiohttp.ClientSession, shared_server: ServerProcess
) -> AsyncIterator[Room]:
    room = await _open_room(Connector(shared_session, shared_server))
    yield room
    for client in (room.offender, room.bystander, room.publisher):
        await client.ws.close()


async def _expect_error(room: Room, code: str, request_id: str | None = None) -> dict[str, Any]:
    error = await room.offender.next_of_type("error")
    assert error["code"] == code
    assert error.get("requestId") == request_id
    assert isinstance(error.get("message"), str)
    # The offender's connection is still usable, and the room never noticed.
    await room.check_delivery(sender=room.offender)
    await room.check_delivery()
    return error


@pytest.mark.parametrize(
    "raw",
    ["not json{", "[1, 2]", '"just a string"', '{"no": "type"}', '{"type": 42}', ""],
    ids=["garbage", "array", "string", "no-type", "numeric-type", "empty"],
)
async def test_malformed_frames(room: Room, raw: str) -> None:
    await room.offender.ws.send_str(raw)
    await _expect_error(room, "malformed_message")


async def test_binary_frame_is_malformed(room: Room) -> None:
    await room.offender.ws.send_bytes(b'{"type": "publish"}')
    await _expect_error(room, "malformed_message")


async def test_unknown_type_echoes_the_request_id(room: Room) -> None:
    await room.offender.send({"type": "dance", "requestId": "r-dance"})
    await _expect_error(room, "unknown_type", "r-dance")


@pytest.mark.parametrize(
    "channel",
    ["", "bell\x07", "line\nbreak", "x" * 257],
    ids=["empty", "control-char", "newline", "too-long"],
)
async def test_invalid_channel(room: Room, channel: str) -> None:
    await room.offender.send({"type": "subscribe", "channel": channel, "requestId": "r-sub"})
    await _expect_error(room, "invalid_channel", "r-sub")
    await room.offender.send(
        {"type": "publish", "channel": channel, "data": 1, "requestId": "r-pub"}
    )
    await _expect_error(room, "invalid_channel", "r-pub")


@pytest.mark.parametrize("channel", ["_metered/x", "_internal/jobs", "_System/clock"])
async def test_reserved_channel(room: Room, channel: str) -> None:
    await room.offender.send({"type": "subscribe", "channel": channel, "requestId": "r-sub"})
    await _expect_error(room, "channel_reserved", "r-sub")
    await room.offender.send(
        {"type": "publish", "channel": channel, "data": 1, "requestId": "r-pub"}
    )
    await _expect_error(room, "channel_reserved", "r-pub")


async def test_missing_data_and_bad_target(room: Room) -> None:
    await room.offender.send({"type": "publish", "channel": room.channel, "requestId": "r-nodata"})
    await _expect_error(room, "missing_data", "r-nodata")
    await room.offender.send({"type": "send", "to": "a\x00b", "data": 1, "requestId": "r-to"})
    await _expect_error(room, "invalid_peer_id", "r-to")


async def test_out_of_scope_channel(shared_session: aiohttp.ClientSession) -> None:
    async with running_server(app_config(channel_patterns='["room-*"]')) as server:
        room = await _open_room(Connector(shared_session, server))
        for n, channel in enumerate(["admin-1", "room-1/deeper", "room"]):
            await room.offender.send(
                {"type": "subscribe", "channel": channel, "requestId": f"s{n}"}
            )
            error = await _expect_error(room, "channel_not_authorized", f"s{n}")
            assert channel in error["message"]
            await room.offender.send(
                {"type": "publish", "channel": channel, "data": 1, "requestId": f"p{n}"}
            )
            await _expect_error(room, "channel_not_authorized", f"p{n}")
        # Wildcard subscriptions need a true subset of the key's scope.
        await room.offender.send({"type": "subscribe", "channel": "**", "requestId": "w1"})
        await _expect_error(room, "channel_not_authorized", "w1")


async def test_oversize_frame_closes_1009(room: Room) -> None:
    # A payload right at the SDK's own cap still fits (the server allows envelope slack)...
    big = "x" * (65536 - 2)
    reply = await room.offender.publish(room.channel, big, "r-big")
    assert reply["type"] == "ack"
    assert (await room.bystander.next_of_type("message"))["data"] == big
    # ...but a frame past 64 KB plus the slack closes the connection with 1009.
    oversize = {"type": "publish", "channel": room.channel, "data": "x" * 70_000, "requestId": "r"}
    await room.offender.ws.send_str(json.dumps(oversize))
    code, frames = await room.offender.until_closed()
    assert code == 1009
    assert [f for f in frames if f.get("requestId") == "r"] == []
    await room.offender_left()
    await room.check_delivery()


async def test_flooding_closes_4011_without_an_error_frame(
    shared_session: aiohttp.ClientSession,
) -> None:
    config = app_config(limits="rate_per_second = 2\nrate_burst = 20")
    async with running_server(config) as server:
        room = await _open_room(Connector(shared_session, server))
        # The room set-up used 1 token (subscribe); 40 more frames empty the bucket.
        for n in range(40):
            await room.offender.send(
                {"type": "publish", "channel": "sink", "data": n, "requestId": f"f{n}"}
            )
        code, frames = await room.offender.until_closed()
        assert code == 4011
        assert "error" not in {f["type"] for f in frames}, "no error frame before a 4011"
        acked = [f for f in frames if f["type"] == "ack"]
        assert 15 <= len(acked) < 40
        await room.offender_left()
        await room.check_delivery()
        await room.check_delivery()
