"""Three nodes behave as one server: SDK clients spread over them see one another."""

from __future__ import annotations

import asyncio

import pytest
from metered_realtime import (
    Direct,
    Disconnected,
    Message,
    Presence,
    ServerRequestError,
    SignallingConnectError,
)

from tests.cluster.conftest import demo_token, js_client, sdk_client
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


def peers(entries: tuple[object, ...]) -> list[str]:
    return [entry.peer_id for entry in entries]  # type: ignore[attr-defined]


async def test_presence_publish_wildcard_and_direct_across_nodes(
    cluster: list[ServerProcess],
) -> None:
    a, b, c = cluster
    async with (
        sdk_client(a, token=demo_token("alice", peer_metadata={"name": "Alice"})) as alice,
        sdk_client(b, token=demo_token("bob")) as bob,
        sdk_client(c, token=demo_token("carol")) as carol,
    ):
        await alice.client.subscribe("room.1")
        snapshot = await alice.next(Presence)
        assert (snapshot.joined, snapshot.left) == ((), ())
        await carol.client.subscribe("room.*")
        await bob.client.subscribe("room.1")
        bob_snapshot = await bob.next(Presence)
        assert peers(bob_snapshot.joined) == ["alice"]
        assert bob_snapshot.joined[0].metadata == {"name": "Alice"}
        joined = await alice.next(Presence, lambda p: bool(p.joined))
        assert peers(joined.joined) == ["bob"]

        await bob.client.publish("room.1", {"text": "hi from b"})
        message = await alice.next(Message)
        assert (message.channel, message.sender_peer_id, message.data) == (
            "room.1",
            "bob",
            {"text": "hi from b"},
        )
        via_pattern = await carol.next(Message)
        assert via_pattern.channel == "room.1"
        await alice.client.publish("room.2", 2)  # only the pattern matches
        assert (await carol.next(Message, skip=1)).channel == "room.2"

        await carol.client.send("alice", {"offer": 1})
        direct = await alice.next(Direct)
        assert (direct.sender_peer_id, direct.data) == ("carol", {"offer": 1})
        with pytest.raises(ServerRequestError) as refused:
            await carol.client.send("nobody", 1)
        assert refused.value.code == "peer_not_found"

        await bob.client.close()
        left = await alice.next(Presence, lambda p: bool(p.left))
        assert peers(left.left) == ["bob"]
        # Each message arrived once, though carol matched through a pattern.
        assert len(carol.of(Message)) == 2
        assert len(alice.of(Message)) == 1


async def test_one_peer_connected_to_two_nodes(cluster: list[ServerProcess]) -> None:
    a, b, c = cluster
    async with sdk_client(c, token=demo_token("watcher")) as watcher:
        await watcher.client.subscribe("room")
        await watcher.next(Presence)
        async with sdk_client(a, token=demo_token("multi")) as first:
            await first.client.subscribe("room")
            await watcher.next(Presence, lambda p: peers(p.joined) == ["multi"])
            async with sdk_client(b, token=demo_token("multi")) as second:
                await second.client.subscribe("room")
                # Decision 5: left then joined, so WebRTC peers rebuild.
                rebuilt = await watcher.next(Presence, lambda p: bool(p.left))
                assert peers(rebuilt.left) == peers(rebuilt.joined) == ["multi"]
                # A direct reaches both connections, on both nodes.
                await watcher.client.send("multi", "both")
                await first.next(Direct)
                await second.next(Direct)
            # One connection closed, the other remains: nothing is emitted. A publish
            # through the same channel marks the point where a left would have shown.
            await first.client.publish("room", "marker")
            await watcher.next(Message)
            assert len([p for p in watcher.of(Presence) if p.left]) == 1
        final = await watcher.next(Presence, lambda p: bool(p.left), skip=1)
        assert peers(final.left) == ["multi"]


async def test_token_expiry_closes_the_connection_and_others_see_left(
    cluster: list[ServerProcess],
) -> None:
    a, b, _ = cluster
    async with (
        sdk_client(a, token=demo_token("watcher")) as watcher,
        sdk_client(b, token=demo_token("brief", ttl_s=2)) as brief,
    ):
        await watcher.client.subscribe("room")
        await brief.client.subscribe("room")
        await watcher.next(Presence, lambda p: peers(p.joined) == ["brief"])
        closed = await brief.next(Disconnected)
        assert closed.code == 4002
        left = await watcher.next(Presence, lambda p: bool(p.left))
        assert peers(left.left) == ["brief"]


async def test_quotas_are_counted_across_nodes(cluster: list[ServerProcess]) -> None:
    a, b, c = cluster
    async with (
        sdk_client(a, api_key="pk_quota") as first,
        sdk_client(b, api_key="pk_quota") as second,
    ):
        with pytest.raises(SignallingConnectError) as refused:
            async with sdk_client(c, api_key="pk_quota"):
                pass
        assert refused.value.close_code == 4010
        for n in range(3):
            await (first if n % 2 else second).client.publish("room", n)
        with pytest.raises(ServerRequestError) as over:
            await first.client.publish("room", 3)
        assert over.value.code == "over_message_quota"
        # The connection stays usable.
        await first.client.subscribe("room")
    # Connections closed on every node free their slots cluster-wide.
    async with sdk_client(c, api_key="pk_quota"):
        pass


async def test_js_and_python_sdks_on_different_nodes(cluster: list[ServerProcess]) -> None:
    a, b, _ = cluster
    async with js_client(a) as js, sdk_client(b, token=demo_token("py")) as py:
        assert (await js.command("subscribe", channel="chat"))["event"] == "ack"
        await py.client.subscribe("chat")
        joined = await js.next("presence", lambda e: bool(e["joined"]))
        assert [p["peerId"] for p in joined["joined"]] == ["py"]
        await py.client.publish("chat", {"from": "python"})
        message = await js.next("message")
        assert (message["from"], message["data"]) == ("py", {"from": "python"})
        js_peer = js.events[0]["peerId"]
        await py.client.send(js_peer, "hello js")
        assert (await js.next("direct"))["data"] == "hello js"
        assert (await js.command("publish", channel="chat", data=[1, 2]))["event"] == "ack"
        assert (await py.next(Message)).data == [1, 2]
        assert (await js.command("send", to="py", data="hi"))["event"] == "ack"
        assert (await py.next(Direct)).data == "hi"
        refused = await js.command("send", to="nobody", data=1)
        assert refused["event"] == "error"
        assert "peer_not_found" in str(refused["code"])


async def test_killed_node_peers_leave_within_the_ttl(cluster: list[ServerProcess]) -> None:
    a, b, c = cluster
    async with sdk_client(a, token=demo_token("survivor")) as survivor:
        await survivor.client.subscribe("room")
        async with sdk_client(c, token=demo_token("doomed")) as doomed:
            await doomed.client.subscribe("room")
            await survivor.next(Presence, lambda p: peers(p.joined) == ["doomed"])
            loop = asyncio.get_running_loop()
            c.process.kill()
            killed_at = loop.time()
            left = await survivor.next(Presence, lambda p: bool(p.left))
            assert peers(left.left) == ["doomed"]
            assert loop.time() - killed_at <= 3.0  # presence_ttl_s
        async with sdk_client(b, token=demo_token("late")) as late:
            await late.client.subscribe("room")
            snapshot = await late.next(Presence)
            assert peers(snapshot.joined) == ["survivor"]


async def test_a_node_shutting_down_says_goodbye(cluster: list[ServerProcess]) -> None:
    a, _, c = cluster
    async with sdk_client(a, token=demo_token("survivor")) as survivor:
        await survivor.client.subscribe("room")
        async with sdk_client(c, token=demo_token("leaving")) as leaving:
            await leaving.client.subscribe("room")
            await survivor.next(Presence, lambda p: peers(p.joined) == ["leaving"])
            assert await c.stop() == 0
            left = await survivor.next(Presence, lambda p: bool(p.left))
            assert peers(left.left) == ["leaving"]
            assert "Traceback" not in c.log_text()
            assert "WARNING" not in c.log_text()
