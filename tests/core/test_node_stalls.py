"""The message-rate bucket and stalls the server imposed (docs/benchmarks.md, "Bad link").

While a frame's handling waits (for the broker, for a full lane) the transport does not read
that connection, so what the client sends meanwhile is read all at once afterwards. The node
times each frame's handling and excuses that time in the connection's buckets: an honest
client is not closed 4011 for the server's stall, a flooder still is. The broker here is the
in-memory one whose publish moves the fake clock, as a stalled Redis would let time pass.
"""

from __future__ import annotations

import asyncio
import dataclasses

from hubbub.brokers.memory import MemoryBroker
from hubbub.core.authorizer import ALLOWED, Verdict
from hubbub.core.broker import Publication
from hubbub.core.node import NodeLimits
from tests.core.fakes import Client, Hub
from tests.core.test_node_hooks import ScriptedAuthorizer, quick, settle
from tests.support.clock import FakeClock

LIMITS = NodeLimits(rate_burst=10, rate_per_second=5, ping_burst=2, ping_rate_per_second=0.25)
STALL_S = 4.0


class StallingBroker(MemoryBroker):
    """A memory broker whose next publish takes ``stall_s`` of the fake clock to answer."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.stall_s = 0.0

    async def publish(self, publication: Publication, *, count_everywhere: bool = False) -> int:
        if self.stall_s:
            self.clock.now += self.stall_s
            self.stall_s = 0.0
        return await super().publish(publication, count_everywhere=count_everywhere)


async def stalled_hub() -> tuple[Hub, StallingBroker]:
    clock = FakeClock()
    broker = StallingBroker(clock)
    hub = await Hub(limits=LIMITS, broker=broker, clock=clock).start()
    return hub, broker


async def steady(client: Client, hub: Hub, count: int, start: int) -> None:
    """``count`` publishes at 4/s, each read when sent."""
    for i in range(count):
        await client.publish("room", i, str(start + i))
        hub.clock.now += 0.25


def acks(client: Client) -> list[str]:
    return [
        e.frame["requestId"] for e in client.sink.events if e.frame and e.frame["type"] == "ack"
    ]


async def test_an_honest_backlog_read_after_a_broker_stall_is_not_closed_4011() -> None:
    hub, broker = await stalled_hub()
    alice = await hub.connect("alice")
    await steady(alice, hub, 4, 0)
    broker.stall_s = STALL_S
    await alice.publish("room", 4, "4")  # answered 4 s later; meanwhile alice sent 16 more
    for i in range(5, 21):
        await alice.publish("room", i, str(i))  # read at once, at the stall's end
    await steady(alice, hub, 20, 21)  # and on at 4/s
    assert alice.sink.close_event() is None
    assert acks(alice) == [str(i) for i in range(41)]


async def test_a_flood_during_a_broker_stall_is_still_closed_4011() -> None:
    hub, broker = await stalled_hub()
    mallory = await hub.connect("mallory")
    await steady(mallory, hub, 4, 0)
    broker.stall_s = STALL_S
    await mallory.publish("room", 4, "4")
    for i in range(5, 65):  # 15/s during the stall: three times the rate
        await mallory.publish("room", i, str(i))
    close = mallory.sink.close_event()
    assert close is not None and close.code == 4011
    # The stall excused 5/s x 4 s over what the bucket held: 10 - 1 + 20 more frames.
    assert len(acks(mallory)) == 5 + 29


async def test_pings_sent_during_a_stall_are_excused_too() -> None:
    hub, broker = await stalled_hub()
    alice = await hub.connect("alice")
    broker.stall_s = STALL_S
    await alice.publish("room", 0, "0")
    for _ in range(3):  # one per 4/3 s during the stall; the ping bucket holds 2, 0.25/s
        await alice.send({"type": "ping"})
    assert alice.sink.close_event() is None
    assert [f["type"] for f in alice.new_frames()] == ["ack", "pong", "pong", "pong"]


async def test_a_full_lane_is_a_stall_the_client_is_not_charged_for() -> None:
    """A publish proxy that does not answer for 4 s: the lane fills, the transport stops
    reading (the node's put waits), and the 16 frames sent meanwhile are read at once."""
    gate: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
    clock = FakeClock()
    hub = await Hub(
        authorizer=ScriptedAuthorizer(lambda kind, channel, data: gate),
        limits=dataclasses.replace(LIMITS, max_pending_frames=1),
        clock=clock,
    ).start()
    alice = await hub.connect("alice", key_id="proxied")
    await quick(alice.publish("room", 0, "0"))  # being decided
    await asyncio.sleep(0)
    await quick(alice.publish("room", 1, "1"))  # the lane is full
    blocked = asyncio.ensure_future(alice.publish("room", 2, "2"))
    await asyncio.sleep(0)
    assert not blocked.done()
    clock.now += STALL_S
    gate.set_result(ALLOWED)
    await quick(blocked)
    for i in range(3, 19):
        await quick(alice.publish("room", i, str(i)))
    await settle(alice)
    assert alice.sink.close_event() is None
    assert acks(alice) == [str(i) for i in range(19)]
