"""An async client for the live conversation protocol over WebSocket.

    async with await ConversationClient.connect("ws://127.0.0.1:8080/ws") as client:
        await client.auth("demo-conversation-key")
        await client.start("user-42")
        greeting = await client.next_turn()          # the agent's greeting, streamed
        await client.send_text("my order is 1001")
        async for message in client.messages():      # every server push, in order
            ...

Replies to commands are matched to their command by ``requestId``; everything else the server
sends (chunks, events, transport errors) is available in arrival order from
:meth:`next_message` / :meth:`messages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from hubbub.errors import ClientLibraryError


class ConversationError(ClientLibraryError):
    """A command was refused (``success: false``) or answered by a transport error."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(reply.get("error", "unknown error"))
        self.reply = reply
        self.message: str = reply.get("error", "")


@dataclass
class Turn:
    """One AI turn as received: ``completed`` False if it was aborted (barge-in)."""

    output_turn_id: str
    text: str
    chunks: list[str] = field(default_factory=list)
    completed: bool = True


class ConversationClient:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self._http = session
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.log: list[dict[str, Any]] = []  # everything received, in order
        self.session_id: str | None = None
        self.conversation_id: str | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, url: str, *, headers: dict[str, str] | None = None, timeout_s: float = 10.0
    ) -> ConversationClient:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=timeout_s)
            )
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def __aenter__(self) -> ConversationClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._ws.closed

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    async def wait_closed(self, timeout_s: float = 10.0) -> None:
        """Wait until the server closes the connection."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout_s)

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._http.close()

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                self.log.append(message)
                waiter = self._pending.pop(str(message.get("requestId")), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
                else:
                    self._inbox.put_nowait(message)
        finally:
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("connection closed"))
            self._inbox.put_nowait(None)

    # --- sending ---------------------------------------------------------------------------

    async def send_raw(self, data: str) -> None:
        await self._ws.send_str(data)

    async def send(self, message: dict[str, Any]) -> None:
        await self._ws.send_str(json.dumps(message))

    async def request(
        self, message_type: str, *, timeout_s: float = 10.0, check: bool = True, **fields: Any
    ) -> dict[str, Any]:
        """Send a command and wait for its reply; raises :class:`ConversationError` on failure
        (unless ``check`` is False)."""
        request_id = f"req-{next(self._ids)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = waiter
        await self.send({"type": message_type, "requestId": request_id, **fields})
        try:
            reply = await asyncio.wait_for(waiter, timeout_s)
        finally:
            self._pending.pop(request_id, None)
        if check and (reply.get("type") == "error" or reply.get("success") is False):
            raise ConversationError(reply)
        return reply

    async def auth(self, api_key: str, **session_settings: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {"apiKey": api_key}
        if session_settings:
            fields["sessionSettings"] = session_settings
        reply = await self.request("auth", **fields)
        self.session_id = reply.get("sessionId")
        return reply

    async def start(self, user_id: str, **fields: Any) -> str:
        reply = await self.request("start_conversation", userId=user_id, **fields)
        self.conversation_id = str(reply["conversationId"])
        return self.conversation_id

    async def resume(self, conversation_id: str) -> dict[str, Any]:
        reply = await self.request("resume_conversation", conversationId=conversation_id)
        self.conversation_id = conversation_id
        return reply

    async def command(self, message_type: str, **fields: Any) -> dict[str, Any]:
        """A command on the current conversation (its ``conversationId`` is added)."""
        return await self.request(message_type, conversationId=self.conversation_id, **fields)

    async def send_text(self, text: str) -> str:
        reply = await self.command("send_user_text_input", text=text)
        return str(reply["inputTurnId"])

    # --- receiving -------------------------------------------------------------------------

    async def next_message(self, timeout_s: float = 10.0) -> dict[str, Any]:
        if self._inbox.empty():
            async with asyncio.timeout(timeout_s):
                message = await self._inbox.get()
        else:
            message = self._inbox.get_nowait()
        if message is None:
            self._inbox.put_nowait(None)
            raise ConnectionError("connection closed")
        return message

    async def messages(self, timeout_s: float = 10.0) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                yield await self.next_message(timeout_s)
            except ConnectionError:
                return

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """The next message that satisfies ``predicate`` (others are skipped)."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.next_message(timeout_s)
                if predicate(message):
                    return message

    async def wait_type(self, message_type: str, timeout_s: float = 10.0) -> dict[str, Any]:
        return await self.wait_for(lambda m: m.get("type") == message_type, timeout_s)

    async def next_turn(self, timeout_s: float = 10.0) -> Turn:
        """Collect the next AI turn, from its start to its end (or abort)."""
        start = await self.wait_type("start_ai_generation_output", timeout_s)
        turn_id = start["outputTurnId"]
        chunks: list[str] = []
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.next_message(timeout_s)
                if message.get("outputTurnId") != turn_id:
                    continue
                kind = message.get("type")
                if kind == "ai_transcribed_chunk":
                    chunks.append(message["chunkText"])
                elif kind == "end_ai_generation_output":
                    return Turn(turn_id, message["fullText"], chunks)
                elif kind == "abort_ai_generation_output":
                    return Turn(turn_id, message["accumulatedText"], chunks, completed=False)
