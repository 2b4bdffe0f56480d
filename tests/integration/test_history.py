"""History, recovery and idempotent publish over real sockets (spec 16.1, 16.2).

Raw WebSocket clients against ``hubbub serve`` (memory broker) with ``[[apps.channels]]``, and
two nodes on Redis for recovery across nodes. Bad input gets its documented error and the
connection (and a bystander) carries on.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.support.redis import SHARED_URL, delete_prefix, unique_prefix
from tests.support.server import DEMO_APP_TOML, ServerProcess, running_server
from tests.support.tokens import DEMO_SECRET, DEMO_SECRET_KEY_ID
from tests.support.ws_client import Connector, RawClient

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

HISTORY_TOML = (
    DEMO_APP_TOML
    + """
[[apps.keys]]
id = "sk_id_nosub"
kind = "secret"
secret = "sk_secret_nosub"
actions = ["publish"]

[[apps.channels]]
pattern = "plain/**"
history_size = 0

[[apps.channels]]
pattern = "**"
history_size = 50
history_ttl_s = 600
"""
)
AUTH = {"Authorization": f"Bearer {DEMO_SECRET_KEY_ID}:{DEMO_SECRET}"}
_numbers = itertools.count(1)


def fresh(prefix: str = "chat") -> str:
    return f"{prefix}/{next(_numbers)}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[ServerProcess]:
    async with running_server(HISTORY_TOML) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def connect(server: ServerProcess) -> AsyncIterator[Connector]:
    async with aiohttp.ClientSession() as session:
        yield Connector(session, server)


async def subscribe(
    client: RawClient, channel: str, request_id: str = "s", **fields: Any
) -> dict[str, Any]:
    """Subscribe; return the ack (the snapshot is read and checked to follow it)."""
    await client.send({"type": "subscribe", "channel": channel, "requestId": request_id, **fields})
    ack = await client.next_matching(lambda f: f.get("requestId") == request_id)
    assert ack["type"] == "ack", ack
    await client.next_matching(lambda f: f["type"] == "presence" and f["channel"] == channel)
    return ack


async def read_messages(client: RawClient, count: int) -> list[tuple[Any, int | None]]:
    found = [await client.next_of_type("message") for _ in range(count)]
    return [(m["data"], m.get("offset")) for m in found]


async def test_offsets_in_acks_and_messages_and_none_elsewhere(connect: Connector) -> None:
    channel = fresh()
    alice, bob = await connect.open(), await connect.open()
    ack = await subscribe(bob, channel)
    epoch = ack["epoch"]
    assert ack == {"type": "ack", "requestId": "s", "offset": 0, "epoch": epoch}
    assert await alice.publish(channel, "hi", "p") == {
        "type": "ack", "requestId": "p", "offset": 1, "epoch": epoch,
    }  # fmt: skip
    message = await bob.next_of_type("message")
    assert (message["offset"], message["epoch"]) == (1, epoch)
    # A channel without history: the hosted service's exact bytes.
    plain = fresh("plain")
    await bob.ws.send_str(json.dumps({"type": "subscribe", "channel": plain, "requestId": "q"}))
    raw = await bob.ws.receive(timeout=10)
    assert raw.data == '{"type":"ack","requestId":"q"}'
    await bob.next_of_type("presence")
    await alice.ws.send_str(json.dumps({"type": "publish", "channel": plain, "data": 1}))
    raw = await bob.ws.receive(timeout=10)
    assert (
        raw.data
        == '{"type":"message","channel":"'
        + plain
        + '","from":"'
        + alice.welcome["peerId"]
        + '","data":1}'
    )


async def test_a_new_socket_recovers_what_it_missed(connect: Connector) -> None:
    channel = fresh()
    alice, bob = await connect.open(), await connect.open()
    epoch = (await subscribe(bob, channel))["epoch"]
    await alice.publish(channel, 1, "p1")
    assert await read_messages(bob, 1) == [(1, 1)]
    await bob.ws.close()
    for n in (2, 3, 4):
        await alice.publish(channel, n, f"p{n}")
    again = await connect.open()
    ack = await subscribe(again, channel, since={"offset": 1, "epoch": epoch})
    assert ack == {"type": "ack", "requestId": "s", "recovered": True, "offset": 4, "epoch": epoch}
    assert await read_messages(again, 3) == [(2, 2), (3, 3), (4, 4)]
    await alice.publish(channel, 5, "p5")
    assert await read_messages(again, 1) == [(5, 5)]


async def test_rewind_and_recovery_without_history(connect: Connector) -> None:
    channel = fresh()
    alice = await connect.open()
    for n in range(1, 5):
        await alice.publish(channel, n, f"p{n}")
    bob = await connect.open()
    ack = await subscribe(bob, channel, rewind=2)
    assert ack["offset"] == 4 and "recovered" not in ack
    assert await read_messages(bob, 2) == [(3, 3), (4, 4)]
    for fields in ({"rewind": 3}, {"since": {"offset": 0, "epoch": "x"}}):
        ack = await subscribe(bob, fresh("plain"), "r", **fields)
        assert ack == {"type": "ack", "requestId": "r", "recovered": False}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"type": "subscribe", "since": {"offset": "7", "epoch": "e"}}, "since must be"),
        ({"type": "subscribe", "since": {"offset": 7}}, "since must be"),
        ({"type": "subscribe", "rewind": -1}, "rewind must be"),
        ({"type": "subscribe", "rewind": 1000}, "rewind must be"),
        ({"type": "publish", "data": 1, "messageId": "m" * 129}, "messageId must be"),
    ],
)
async def test_bad_history_input_is_malformed_and_nothing_else_breaks(
    connect: Connector, frame: dict[str, Any], message: str
) -> None:
    channel = fresh()
    offender, bystander, publisher = [await connect.open() for _ in range(3)]
    await subscribe(offender, channel)
    await subscribe(bystander, channel)
    await offender.send({**frame, "channel": channel, "requestId": "bad"})
    error = await offender.next_matching(lambda f: f.get("requestId") == "bad")
    assert error["type"] == "error" and error["code"] == "malformed_message"
    assert error["message"].startswith(message)
    # The offender's connection and subscription, and the bystander, go on.
    await publisher.publish(channel, "after", "p")
    for client in (offender, bystander):
        assert (await client.next_of_type("message"))["data"] == "after"
    assert (await offender.publish(channel, "mine", "o"))["type"] == "ack"
    assert (await bystander.next_of_type("message"))["data"] == "mine"


async def test_a_repeated_message_id_is_delivered_once(connect: Connector) -> None:
    channel = fresh()
    alice, bob = await connect.open(), await connect.open()
    await subscribe(bob, channel)
    frame = {"type": "publish", "channel": channel, "data": "once", "messageId": "m-1"}
    await alice.send({**frame, "requestId": "a"})
    await alice.send({**frame, "requestId": "b"})
    first = await alice.next_matching(lambda f: f.get("requestId") == "a")
    second = await alice.next_matching(lambda f: f.get("requestId") == "b")
    assert second == {**first, "requestId": "b", "duplicate": True}
    await alice.publish(channel, "next", "c")
    assert await read_messages(bob, 2) == [("once", 1), ("next", 2)]


async def test_rest_history_and_idempotent_rest_publish(
    connect: Connector, server: ServerProcess
) -> None:
    channel = fresh()
    base = f"{server.http_url}/v1/channels/{channel.replace('/', '%2F')}"
    session = connect.session
    for n in range(1, 4):
        body = {"data": {"n": n}, "from": "bot", "messageId": f"rest-{n}"}
        async with session.post(f"{base}/publish", json=body, headers=AUTH) as reply:
            assert reply.status == 200
            answer = await reply.json()
            assert answer["offset"] == n and "duplicate" not in answer
    async with session.post(f"{base}/publish", json=body, headers=AUTH) as reply:
        again = await reply.json()
    assert again == {**answer, "delivered": 0, "duplicate": True}
    async with session.get(f"{base}/history?limit=2", headers=AUTH) as reply:
        page = await reply.json()
    assert page["channel"] == channel and page["offset"] == 3 and page["epoch"] == answer["epoch"]
    assert [(p["offset"], p["data"], p["from"]) for p in page["publications"]] == [
        (2, {"n": 2}, "bot"),
        (3, {"n": 3}, "bot"),
    ]
    assert all(isinstance(p["timestamp"], int) for p in page["publications"])
    async with session.get(f"{base}/history?since=1&limit=1", headers=AUTH) as reply:
        assert [p["offset"] for p in (await reply.json())["publications"]] == [2]
    async with session.get(f"{base}/history?limit=101", headers=AUTH) as reply:
        assert reply.status == 400 and (await reply.json())["error"] == "invalid_request"
    nosub = {"Authorization": "Bearer sk_id_nosub:sk_secret_nosub"}
    async with session.get(f"{base}/history", headers=nosub) as reply:
        assert reply.status == 403 and (await reply.json())["error"] == "action_not_permitted"
    plain = f"{server.http_url}/v1/channels/plain%2Fx/history"
    async with session.get(plain, headers=AUTH) as reply:
        assert await reply.json() == {
            "channel": "plain/x", "epoch": None, "offset": 0, "publications": [],
        }  # fmt: skip


async def test_a_restarted_single_node_reports_the_history_lost() -> None:
    channel = fresh()
    async with aiohttp.ClientSession() as session:
        async with running_server(HISTORY_TOML) as first:
            client = await Connector(session, first).open()
            epoch = (await subscribe(client, channel))["epoch"]
            await client.publish(channel, 1, "p")
            await client.ws.close()
        async with running_server(HISTORY_TOML) as second:
            client = await Connector(session, second).open()
            ack = await subscribe(client, channel, since={"offset": 1, "epoch": epoch})
            assert ack["recovered"] is False and ack["epoch"] != epoch and ack["offset"] == 0
            await client.ws.close()


async def test_recovery_across_two_nodes_on_redis() -> None:
    prefix = unique_prefix()
    toml = (
        f'[broker]\nkind = "redis"\nurl = "{SHARED_URL}"\nkey_prefix = "{prefix}"\n' + HISTORY_TOML
    )
    channel = fresh()
    try:
        async with (
            running_server(toml) as one,
            running_server(toml) as two,
            aiohttp.ClientSession() as session,
        ):
            publisher = await Connector(session, two).open()
            bob = await Connector(session, one).open()
            epoch = (await subscribe(bob, channel))["epoch"]
            await publisher.publish(channel, 1, "p1")
            assert await read_messages(bob, 1) == [(1, 1)]
            await bob.ws.close()
            for n in (2, 3):
                await publisher.publish(channel, n, f"p{n}")
            again = await Connector(session, two).open()
            ack = await subscribe(again, channel, since={"offset": 1, "epoch": epoch})
            assert (ack["recovered"], ack["offset"], ack["epoch"]) == (True, 3, epoch)
            assert await read_messages(again, 2) == [(2, 2), (3, 3)]
            for client in (publisher, again):
                await client.ws.close()
    finally:
        await delete_prefix(6379, prefix)
