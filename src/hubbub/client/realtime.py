"""A realtime client that does not lose messages: reconnects, recovers, retries publishes.

    async with RealtimeClient("ws://127.0.0.1:8080", api_key="pk_live_demo") as client:
        await client.subscribe("chat/room-1")
        await client.publish("chat/room-1", {"text": "hello"})   # retried with a messageId
        async for event in client.events():
            match event:
                case Message(channel=channel, data=data):
                    ...                                # each publication once, in order
                case Subscribed(recovered=False):
                    ...                                # history lost: resync from your source
                case Presence() | Direct() | Disconnected() | Connected():
                    ...

What it does for you (spec sections 3, 4, 16.1, 16.2):

* **Connect** with a publishable key (``api_key``) or a JWT from ``token_provider`` (called on
  every attempt, so a refreshed token is used). ``url`` may be a list of nodes: each attempt
  takes the next one.
* **Reconnect** after any drop except the terminal close codes (4001, 4003, 4012, 4020), with
  exponential backoff (``backoff_initial_s`` doubling to ``backoff_max_s``, ±20 % jitter; at
  least 30 s after 4010). A ``going_away`` frame's ``retryAfterMs`` is honoured as the first
  delay (jittered, so a node's clients do not all return at once).
* **Recover**: for every channel it remembers the last offset and epoch it delivered (from
  messages and from the subscribe ack), and resubscribes with ``since``. The server replays
  what was missed; live copies it has already delivered are dropped by offset, and so are the
  replays of its own publications (a publisher never gets its own messages live). Each
  resubscribe yields :class:`Subscribed`; ``recovered=False`` means something may be missing
  (the history was lost or too short): the application must resync.
* **Publish** with a ``messageId`` (a UUID unless given) and retry on a timeout, a drop or a
  ``backend_error``, so a retried publish can never be delivered twice.
* **Presence** frames are events; :meth:`members` is the current membership of a channel.

Many clients may share one ``session``; give it ``aiohttp.TCPConnector(limit=0)``, since
aiohttp's default connector holds at most 100 connections (each client keeps one).

Errors: :class:`RealtimeError` (with the server's ``code``) for a refused request;
:class:`DisconnectedError` when the client is closed, or stopped reconnecting, before an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import aiohttp

from hubbub.client.realtime_events import (
    Connected,
    Direct,
    Disconnected,
    DisconnectedError,
    Event,
    GoingAway,
    Message,
    Presence,
    Published,
    RealtimeError,
    ServerError,
    Subscribed,
)

__all__ = [
    "Connected",
    "Direct",
    "Disconnected",
    "DisconnectedError",
    "Event",
    "GoingAway",
    "Message",
    "Presence",
    "Published",
    "RealtimeClient",
    "RealtimeError",
    "ServerError",
    "Subscribed",
]

TERMINAL_CLOSE_CODES: Final = frozenset({4001, 4003, 4012, 4020})
OVER_CONCURRENT_LIMIT: Final = 4010
_OWN_OFFSETS_KEPT: Final = 1024


@dataclass
class _Channel:
    include_sender_metadata: bool
    offset: int | None = None
    epoch: str | None = None
    own: deque[int] = field(default_factory=lambda: deque(maxlen=_OWN_OFFSETS_KEPT))
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    awaiting_snapshot: bool = False  # the next presence frame is the full membership

    def since(self) -> dict[str, Any] | None:
        if self.offset is None or self.epoch is None:
            return None
        return {"offset": self.offset, "epoch": self.epoch}


class RealtimeClient:
    def __init__(
        self,
        url: str | Sequence[str],
        *,
        api_key: str | None = None,
        token_provider: Callable[[], Awaitable[str]] | None = None,
        reconnect: bool = True,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        request_timeout_s: float = 10.0,
        publish_attempts: int = 5,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if (api_key is None) == (token_provider is None):
            raise ValueError("give exactly one of api_key and token_provider")
        self._urls = [url] if isinstance(url, str) else list(url)
        self._api_key = api_key
        self._token_provider = token_provider
        self._reconnect = reconnect
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._request_timeout_s = request_timeout_s
        self._publish_attempts = publish_attempts
        self._session = session
        self._own_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._on_ack: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._channels: dict[str, _Channel] = {}
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._connected = asyncio.Event()
        self._closed = False
        self._attempt = 0
        self._retry_after_s: float | None = None
        self._runner: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self.peer_id: str | None = None
        self.reconnects = 0  # successful reconnects so far

    # --- lifecycle --------------------------------------------------------------------------

    async def connect(self) -> RealtimeClient:
        """Connect (the first attempt must succeed) and keep the connection up from then on."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        self._runner = loop.create_task(self._run())
        await self._first
        return self

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._fail_pending(DisconnectedError("the client was closed"))
        if self._own_session and self._session is not None:
            await self._session.close()
        self._events.put_nowait(None)

    async def __aenter__(self) -> RealtimeClient:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def events(self) -> AsyncIterator[Event]:
        """Every event in arrival order, until the client is closed."""
        while (event := await self._events.get()) is not None:
            yield event

    async def next_event(self, timeout_s: float | None = None) -> Event:
        async with asyncio.timeout(timeout_s):
            event = await self._events.get()
        if event is None:
            raise DisconnectedError("the client was closed")
        return event

    def position(self, channel: str) -> tuple[int, str] | None:
        """The last offset and epoch delivered on ``channel`` (what recovery starts from)."""
        state = self._channels.get(channel)
        if state is None or state.offset is None or state.epoch is None:
            return None
        return state.offset, state.epoch

    def members(self, channel: str) -> dict[str, dict[str, Any]]:
        """Peers present in ``channel`` (others than this client), with their metadata."""
        state = self._channels.get(channel)
        return dict(state.members) if state is not None else {}

    # --- requests ---------------------------------------------------------------------------

    async def subscribe(
        self, channel: str, *, include_sender_metadata: bool = False, rewind: int | None = None
    ) -> Subscribed:
        """Subscribe (resubscribed with ``since`` after every reconnect). ``rewind``: also
        deliver the channel's last K publications first."""
        state = self._channels.setdefault(channel, _Channel(include_sender_metadata))
        state.include_sender_metadata = include_sender_metadata
        extra: dict[str, Any] = {"rewind": rewind} if rewind else {}
        return await self._subscribe(channel, state, extra)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.pop(channel, None)
        await self._request({"type": "unsubscribe", "channel": channel})

    async def publish(self, channel: str, data: Any, *, message_id: str | None = None) -> Published:
        """Publish; retried (same ``messageId``) until acknowledged or attempts run out."""
        frame = {
            "type": "publish",
            "channel": channel,
            "data": data,
            "messageId": message_id or uuid.uuid4().hex,
        }
        for attempt in range(1, self._publish_attempts + 1):
            try:
                ack = await self._request(frame)
            except (DisconnectedError, TimeoutError):
                if self._closed or attempt == self._publish_attempts:
                    raise
            except RealtimeError as refused:
                if refused.code != "backend_error" or attempt == self._publish_attempts:
                    raise
                await asyncio.sleep(self._backoff(attempt))
            else:
                offset = ack.get("offset")
                state = self._channels.get(channel)
                if isinstance(offset, int) and state is not None:
                    state.own.append(offset)
                return Published(offset, ack.get("epoch"), bool(ack.get("duplicate")))
        raise DisconnectedError("publish was not acknowledged")  # pragma: no cover

    async def send(self, to: str, data: Any) -> None:
        """A direct message to every connection of peer ``to`` (not retried: no messageId)."""
        await self._request({"type": "send", "to": to, "data": data})

    async def _subscribe(self, channel: str, state: _Channel, extra: dict[str, Any]) -> Subscribed:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel, **extra}
        if state.include_sender_metadata:
            frame["includeSenderMetadata"] = True
        since = state.since()
        if since is not None and "rewind" not in extra:
            frame["since"] = since
        ack = await self._request(frame, on_ack=lambda ack: self._subscribed(state, frame, ack))
        event = Subscribed(
            channel,
            ack.get("recovered") if "since" in frame else None,
            ack.get("offset"),
            ack.get("epoch"),
        )
        self._emit(event)
        return event

    @staticmethod
    def _subscribed(state: _Channel, frame: dict[str, Any], ack: dict[str, Any]) -> None:
        """A subscribe's ack, taken in when it is read (before the replay that follows it)."""
        state.awaiting_snapshot = True
        offset, epoch = ack.get("offset"), ack.get("epoch")
        if not isinstance(offset, int) or not isinstance(epoch, str):
            return  # no history on this channel
        if "since" in frame and epoch == state.epoch:
            return  # the replay (if any) continues from where we were
        # A first subscribe, or the history was lost (another epoch): start from the channel's
        # position; a rewind's replay is the K before it.
        state.own.clear()
        state.epoch = epoch
        state.offset = max(0, offset - int(frame.get("rewind") or 0))

    async def _request(
        self,
        frame: dict[str, Any],
        *,
        on_ack: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Send a frame once connected; its ``ack`` (or raise its error). ``on_ack`` runs when
        the ack is read, before any later frame is dispatched."""
        if self._closed:
            raise DisconnectedError("the client is closed")
        async with asyncio.timeout(self._request_timeout_s):
            await self._connected.wait()
            ws = self._ws
            assert ws is not None
            request_id = f"r{next(self._ids)}"
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending[request_id] = future
            if on_ack is not None:
                self._on_ack[request_id] = on_ack
            try:
                await ws.send_str(json.dumps({**frame, "requestId": request_id}))
                reply = await future
            except (aiohttp.ClientError, ConnectionError) as exc:
                raise DisconnectedError(str(exc)) from exc
            finally:
                self._pending.pop(request_id, None)
                self._on_ack.pop(request_id, None)
        if reply["type"] == "error":
            raise RealtimeError(str(reply.get("code")), str(reply.get("message", "")))
        return reply

    # --- the connection loop ----------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        delay: float = min(
            self._backoff_max_s, self._backoff_initial_s * 2.0 ** max(0, attempt - 1)
        )
        return delay * random.uniform(0.8, 1.2)

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        url = self._urls[self._attempt % len(self._urls)].rstrip("/")
        self._attempt += 1
        if self._api_key is not None:
            query = {"key": self._api_key}
        else:
            assert self._token_provider is not None
            query = {"token": await self._token_provider()}
        assert self._session is not None
        return await self._session.ws_connect(
            f"{url}/v1", params=query, heartbeat=20.0, timeout=aiohttp.ClientWSTimeout(ws_close=5)
        )

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            close_code: int | None = None
            try:
                ws = await self._open()
                welcome = json.loads((await ws.receive(timeout=10)).data)
                if welcome.get("type") != "welcome":
                    close_code = ws.close_code
                    raise DisconnectedError(f"no welcome (close {ws.close_code})")
            except Exception as exc:
                if self._first is not None and not self._first.done():
                    self._first.set_exception(DisconnectedError(f"cannot connect: {exc}"))
                    return
                failures += 1
                if close_code in TERMINAL_CLOSE_CODES or not self._reconnect:
                    self._emit(Disconnected(close_code, str(exc), False))
                    self._fail_pending(DisconnectedError("stopped reconnecting"))
                    return
                await asyncio.sleep(self._backoff(failures))
                continue
            reconnected = self.peer_id is not None
            self.peer_id = welcome["peerId"]
            self._ws, self._retry_after_s = ws, None
            failures = 0
            reader = asyncio.get_running_loop().create_task(self._read(ws))
            self._connected.set()
            self._emit(Connected(welcome["peerId"], reconnected))
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
            if reconnected:
                self.reconnects += 1
                resubscribing = asyncio.get_running_loop().create_task(self._resubscribe_all())
            code = await reader
            self._connected.clear()
            self._ws = None
            self._fail_pending(DisconnectedError(f"connection closed ({code})"))
            if reconnected:
                resubscribing.cancel()
            will_reconnect = (
                not self._closed and self._reconnect and code not in TERMINAL_CLOSE_CODES
            )
            self._emit(Disconnected(code, f"closed with {code}", will_reconnect))
            if not will_reconnect:
                self._fail_pending(DisconnectedError("stopped reconnecting"))
                return
            if self._retry_after_s is not None:
                delay = self._retry_after_s * random.uniform(0.5, 1.5)
            else:
                delay = self._backoff(1)
            if code == OVER_CONCURRENT_LIMIT:
                delay = max(delay, 30.0)
            await asyncio.sleep(delay)

    async def _resubscribe_all(self) -> None:
        for channel, state in list(self._channels.items()):
            for attempt in range(1, 4):
                try:
                    await self._subscribe(channel, state, {})
                    break
                except RealtimeError as refused:
                    self._emit(ServerError(refused.code, refused.message))
                    if refused.code != "backend_error":
                        break
                except (DisconnectedError, TimeoutError):
                    return  # the next connection resubscribes
                await asyncio.sleep(self._backoff(attempt))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> int | None:
        async for raw in ws:
            if raw.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(raw.data)
            except ValueError:
                continue
            self._dispatch(frame)
        return ws.close_code

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        request_id = frame.get("requestId")
        if kind in ("ack", "error") and request_id in self._pending:
            future = self._pending[request_id]
            taking = self._on_ack.pop(request_id, None)
            if kind == "ack" and taking is not None:
                taking(frame)
            if not future.done():
                future.set_result(frame)
            return
        if kind == "message":
            self._on_message(frame)
        elif kind == "presence":
            self._on_presence(frame)
        elif kind == "direct":
            self._emit(Direct(frame["from"], frame.get("data"), frame.get("fromMetadata")))
        elif kind == "going_away":
            retry_ms = int(frame.get("retryAfterMs") or 1000)
            self._retry_after_s = retry_ms / 1000
            self._emit(GoingAway(retry_ms))
        elif kind == "error":
            self._emit(ServerError(str(frame.get("code")), str(frame.get("message", ""))))

    def _on_message(self, frame: dict[str, Any]) -> None:
        channel = frame["channel"]
        offset, epoch = frame.get("offset"), frame.get("epoch")
        state = self._channels.get(channel)
        if state is not None and isinstance(offset, int):
            if epoch == state.epoch and state.offset is not None and offset <= state.offset:
                return  # delivered already (a replay overlapping what arrived live)
            if epoch != state.epoch:
                state.own.clear()
            state.offset, state.epoch = offset, epoch
            if offset in state.own:
                return  # our own publication, replayed after a reconnect
        self._emit(
            Message(
                channel, frame["from"], frame.get("data"), offset, epoch, frame.get("fromMetadata")
            )
        )

    def _on_presence(self, frame: dict[str, Any]) -> None:
        state = self._channels.get(frame["channel"])
        joined, left = tuple(frame.get("joined", ())), tuple(frame.get("left", ()))
        if state is not None:
            if state.awaiting_snapshot:
                state.awaiting_snapshot = False
                state.members.clear()
            for entry in left:
                state.members.pop(entry["peerId"], None)
            for entry in joined:
                state.members[entry["peerId"]] = entry.get("metadata") or {}
        self._emit(Presence(frame["channel"], joined, left))

    def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
