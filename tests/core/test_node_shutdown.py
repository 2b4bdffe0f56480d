"""A shutdown awaits the node's last connection instead of polling its count."""

from __future__ import annotations

import asyncio

from hubbub.protocol.codes import CloseCode
from tests.core.fakes import Hub

WAIT_S = 2.0


async def test_a_node_without_connections_is_empty_at_once(hub: Hub) -> None:
    async with asyncio.timeout(WAIT_S):
        await hub.node.until_no_connections()


async def test_the_wait_ends_when_the_last_connection_is_released(hub: Hub) -> None:
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    await alice.subscribe("room")
    waiting = asyncio.create_task(hub.node.until_no_connections())
    hub.node.close_all(CloseCode.GOING_AWAY)
    assert alice.sink.close_event() is not None and bob.sink.close_event() is not None
    await asyncio.sleep(0)
    assert not waiting.done()  # closing is not released: the transport still holds them
    await alice.close()
    await asyncio.sleep(0)
    assert not waiting.done()
    await bob.close()
    async with asyncio.timeout(WAIT_S):
        await waiting
    assert hub.node.connection_count == 0


async def test_a_new_connection_makes_the_node_wait_again(hub: Hub) -> None:
    alice = await hub.connect("alice")
    await alice.close()
    async with asyncio.timeout(WAIT_S):
        await hub.node.until_no_connections()
    carol = await hub.connect("carol")
    waiting = asyncio.create_task(hub.node.until_no_connections())
    await asyncio.sleep(0)
    assert not waiting.done()
    await carol.close()
    async with asyncio.timeout(WAIT_S):
        await waiting


async def test_the_wait_ends_when_a_stopping_node_releases_connections_locally(hub: Hub) -> None:
    """A broker whose stop releases the whole node (Redis) lets a stopping node forget each
    connection locally; the last one must still end the wait (it used to run into the
    shutdown's 5 s bound on every Redis node restart)."""
    hub.broker.releases_node_on_stop = True  # what RedisBroker declares
    alice = await hub.connect("alice")
    bob = await hub.connect("bob")
    await alice.subscribe("room")
    hub.node.announce_shutdown()
    waiting = asyncio.create_task(hub.node.until_no_connections())
    hub.node.close_all(CloseCode.GOING_AWAY)
    await alice.close()
    await asyncio.sleep(0)
    assert not waiting.done()
    await bob.close()
    async with asyncio.timeout(WAIT_S):
        await waiting
    assert hub.node.connection_count == 0
