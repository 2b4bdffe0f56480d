"""The sending node's orderer and the router that picks it (no Redis)."""

from __future__ import annotations

import asyncio

from hubbub.brokers.redis_events import ChannelOrderer, RedisEventRouter
from hubbub.core.events import ChannelEvent, ChannelEventName

ADDED = ChannelEventName.MEMBER_ADDED
VACATED = ChannelEventName.CHANNEL_VACATED


class Sink:
    def __init__(self) -> None:
        self.events: list[ChannelEvent] = []
        self.changed = asyncio.Event()

    def wants(self, app_id: str, name: ChannelEventName) -> bool:
        return True

    def emit(self, event: ChannelEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def seqs(self) -> list[int | None]:
        return [e.seq for e in self.events]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()


def numbered(seq: int, channel: str = "room", name: ChannelEventName = ADDED) -> ChannelEvent:
    return ChannelEvent(name, "app", channel, f"p{seq}", seq=seq)


async def test_out_of_order_numbers_are_released_in_order() -> None:
    sink = Sink()
    orderer = ChannelOrderer(sink)
    for seq in (1, 3, 2, 5, 4):
        orderer.accept(numbered(seq))
    assert sink.seqs() == [1, 2, 3, 4, 5]


async def test_a_channel_first_seen_past_one_settles_then_goes_from_the_lowest() -> None:
    sink = Sink()
    orderer = ChannelOrderer(sink, settle_s=0.05)
    orderer.accept(numbered(7))
    orderer.accept(numbered(9))
    orderer.accept(numbered(6))
    assert sink.seqs() == []
    await sink.wait_for(2)
    assert sink.seqs() == [6, 7]  # 8 is still missing: 9 waits for it
    orderer.accept(numbered(8))
    assert sink.seqs() == [6, 7, 8, 9]


async def test_a_number_that_never_comes_holds_later_ones_at_most_hold_s() -> None:
    sink = Sink()
    orderer = ChannelOrderer(sink, hold_s=0.05)
    orderer.accept(numbered(1))
    orderer.accept(numbered(3))
    assert sink.seqs() == [1]
    await sink.wait_for(2)
    assert sink.seqs() == [1, 3]
    assert orderer.gaps_skipped == 1
    orderer.accept(numbered(2))  # late: sent at once rather than never
    assert sink.seqs() == [1, 3, 2]
    assert orderer.released_late == 1


async def test_channels_are_independent_and_unnumbered_events_pass() -> None:
    sink = Sink()
    orderer = ChannelOrderer(sink)
    orderer.accept(numbered(1, "a"))
    orderer.accept(numbered(2, "b"))  # held: b's 1 has not come
    orderer.accept(ChannelEvent(ChannelEventName.CLIENT_EVENT, "app", "b", "x", b"1"))
    orderer.accept(numbered(1, "b"))
    assert [(e.channel, e.seq) for e in sink.events] == [
        ("a", 1),
        ("b", None),
        ("b", 1),
        ("b", 2),
    ]


async def test_a_vacated_channel_keeps_its_count_and_a_new_count_starts_at_one() -> None:
    sink = Sink()
    orderer = ChannelOrderer(sink)
    orderer.accept(numbered(1))
    orderer.accept(numbered(2, name=VACATED))
    orderer.accept(numbered(4))  # the next occupation, its 3 still on the way
    assert sink.seqs() == [1, 2]
    orderer.accept(numbered(3))
    assert sink.seqs() == [1, 2, 3, 4]
    orderer.accept(numbered(1))  # a count started again (Redis lost it)
    orderer.accept(numbered(3))
    orderer.accept(numbered(2))
    assert sink.seqs() == [1, 2, 3, 4, 1, 2, 3]


async def test_the_router_hands_over_and_takes_over_from_a_sender_that_does_not_hear() -> None:
    sink = Sink()
    router = RedisEventRouter("a", sink)
    loop = asyncio.get_running_loop()
    handed: list[tuple[str, int | None]] = []
    listening = {"b": 1, "c": 0, "d": 0}  # b hears; c and d are gone
    claims: list[tuple[str, str]] = []
    claim_answers = {"c": "a", "d": "b"}

    def forward(node_id: str, event: ChannelEvent) -> asyncio.Future[int]:
        handed.append((node_id, event.seq))
        answer: asyncio.Future[int] = loop.create_future()
        answer.set_result(listening[node_id])
        return answer

    async def claim(app_id: str, channel: str, unheard: str) -> str:
        claims.append((channel, unheard))
        return claim_answers[unheard]

    router.attach(forward, claim)
    router.decided(numbered(1, "mine"), "a")  # this node sends "mine": no hand-over
    assert sink.seqs() == [1] and handed == []
    router.decided(numbered(1, "theirs"), "b")
    await asyncio.sleep(0)
    assert handed == [("b", 1)] and router.handed_over == 1
    router.decided(numbered(1, "orphan"), "c")  # c is gone: a claims the channel and wins
    await sink.wait_for(2)
    assert claims == [("orphan", "c")]
    assert [(e.channel, e.seq) for e in sink.events] == [("mine", 1), ("orphan", 1)]
    router.decided(numbered(1, "lost"), "d")  # d is gone, b claimed first: handed to b
    async with asyncio.timeout(2):
        while ("b", 1) not in handed[2:]:
            await asyncio.sleep(0)
    assert claims[-1] == ("lost", "d")
    assert router.claimed == 2
    router.emit(ChannelEvent(ChannelEventName.CLIENT_EVENT, "app", "x", "x", b"1"))
    assert sink.events[-1].name is ChannelEventName.CLIENT_EVENT  # not routed
