"""Socket-free stand-ins for engine tests: a recording ClientChannel, a settable clock."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from tests.support.clock import FakeClock


class FakeChannel:
    """A ClientChannel that records what the engine sends (no sockets)."""

    kind = "websocket"
    client_ip = "127.0.0.1"

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed_with: list[object] = []  # the CloseReason of every close() asked for

    def send_message(self, message: bytes) -> None:
        decoded = json.loads(message)
        self.messages.append(decoded)
        self.inbox.put_nowait(decoded)

    def send_voice(self, chunk: object) -> None:
        raise AssertionError("no voice in these tests")

    def start_output_turn(self, output_turn_id: str, message: bytes) -> None:
        self.send_message(message)

    def end_output_turn(self, output_turn_id: str, message: bytes, *, aborted: bool) -> None:
        self.send_message(message)

    async def voice_sent(self, output_turn_id: str) -> None:
        pass

    def hold_voice(self, held: bool) -> None:
        pass

    def input_turn_opened(self, input_turn_id: str) -> None:
        pass

    def input_turn_closed(self, input_turn_id: str) -> None:
        pass

    def close(self, why: object) -> None:
        self.closed_with.append(why)

    async def wait_for(self, **fields: Any) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while True:
                message = await self.inbox.get()
                if all(message.get(k) == v for k, v in fields.items()):
                    return message


# The conversation tests' name for the one fake clock (tests.support.clock).
Clock = FakeClock


async def command(channel: FakeChannel, session: Any, **message: Any) -> dict[str, Any]:
    request_id = uuid.uuid4().hex
    await session.handle_message(json.dumps({"requestId": request_id, **message}))
    return await channel.wait_for(requestId=request_id)
