"""One WebRTC client: its peer connection, the ``control`` and ``audio`` DataChannels (or media
tracks), and the :class:`~hubbub.conversation.session.channel.ClientChannel` the engine talks to.

Lifecycle (conversation spec section 7): the session is opened when ``control`` opens; when
``control`` closes, the peer connection fails, or the engine closes the channel, the session's
``closed()`` runs once, both DataChannels and the peer connection are closed, and the
conversation stays resumable from a new session.

Everything the client sends goes through one bounded inbox consumed by one task, so the engine
sees control messages and audio in arrival order, one at a time, as on the WebSocket. AI voice
leaves through one pacer task per peer (see :mod:`hubbub.transports.webrtc_voice` for the
ordering guarantee against ``start_ai_generation_output``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from hubbub.conversation.protocol.pushes import VoiceChunk
from hubbub.conversation.session.channel import (
    GOING_AWAY,
    CloseReason,
    SessionFactory,
    SessionHandler,
    TransportKind,
)
from hubbub.protocol.audio_frame import AudioFrame, decode_audio_frame
from hubbub.transports.webrtc_media import AiVoiceTrack, read_microphone
from hubbub.transports.webrtc_settings import PeerLimits
from hubbub.transports.webrtc_voice import OutboundVoice, QueuedFrame

log = logging.getLogger(__name__)

CONTROL_LABEL = "control"
AUDIO_LABEL = "audio"


@dataclass(frozen=True, slots=True)
class _Message:
    payload: str | bytes


@dataclass(frozen=True, slots=True)
class _Audio:
    turn_id: str
    audio: bytes


class WebRtcPeer:
    """One client peer connection; also its :class:`ClientChannel`."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        sessions: SessionFactory,
        ip: str,
        limits: PeerLimits,
        on_closed: Callable[[WebRtcPeer], None],
    ) -> None:
        self.pc = pc
        self._sessions = sessions
        self._ip = ip
        self._limits = limits
        self._on_closed = on_closed
        self._control: RTCDataChannel | None = None
        self._audio: RTCDataChannel | None = None
        self._session: SessionHandler | None = None
        self._inbox: asyncio.Queue[_Message | _Audio] = asyncio.Queue(limits.inbox_size)
        self._voice = OutboundVoice(limits.max_queued_voice_s)
        self._voice_ready = asyncio.Event()
        self._voice_drained: dict[str, asyncio.Event] = {}
        self._track: AiVoiceTrack | None = None
        self._input_turn_id: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._control_opened = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._handling = False
        self._closing: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self.dropped_audio_frames = 0
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)

    # --- ClientChannel ---------------------------------------------------------------------

    @property
    def kind(self) -> TransportKind:
        return "webrtc"

    @property
    def client_ip(self) -> str:
        return self._ip

    @property
    def closed(self) -> bool:
        return self._closing is not None

    def send_message(self, message: bytes) -> None:
        control = self._control
        if control is None or control.readyState != "open" or self.closed:
            return
        if control.bufferedAmount > self._limits.slow_consumer_bytes:
            log.info("webrtc client %s is a slow consumer; closing", self._ip)
            self.close()
            return
        control.send(message.decode("utf-8"))

    def send_voice(self, chunk: VoiceChunk) -> None:
        if self.closed or (self._track is None and self._audio is None):
            return
        self._voice.add(chunk)
        if self._voice:
            self._voice_ready.set()

    def start_output_turn(self, output_turn_id: str, message: bytes) -> None:
        self.send_message(message)
        if self.closed:
            return
        self._voice.turn_started(output_turn_id)  # its voice is queued behind the start
        self._wake_drained()  # older turns are superseded
        if self._voice:
            self._voice_ready.set()

    def end_output_turn(self, output_turn_id: str, message: bytes, *, aborted: bool) -> None:
        self.send_message(message)
        if aborted and not self.closed:
            self._voice.turn_aborted(output_turn_id)  # paced audio stops at once
            self._wake_drained()

    async def voice_sent(self, output_turn_id: str) -> None:
        if self.closed or self._voice.unsent(output_turn_id) == 0:
            return
        drained = self._voice_drained.setdefault(output_turn_id, asyncio.Event())
        await drained.wait()

    def hold_voice(self, held: bool) -> None:
        self._voice.held = held
        if self._voice:
            self._voice_ready.set()

    def input_turn_opened(self, input_turn_id: str) -> None:
        self._input_turn_id = input_turn_id

    def input_turn_closed(self, input_turn_id: str) -> None:
        if input_turn_id == self._input_turn_id:
            self._input_turn_id = None

    def close(self, why: CloseReason | None = None) -> None:
        """Close both DataChannels and the peer connection (which carry no close code, so
        ``why`` is only logged)."""
        if why is not None and self._closing is None:
            log.info("webrtc client %s: %s; closing", self._ip, why.reason)
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())

    def going_away(self) -> None:
        """Server shutdown: the session ends its live turn (its last messages still go out),
        then the peer closes."""
        if self._session is not None and not self.closed:
            self._session.going_away()
        self.close(GOING_AWAY)

    async def wait_closed(self) -> None:
        """Close, and return once everything is released."""
        self.close()
        await self._done.wait()

    async def until_closed(self) -> None:
        """Return once the peer has closed, for whatever reason (does not close it)."""
        await self._done.wait()

    # --- setup -----------------------------------------------------------------------------

    def attach_voice_track(self) -> None:
        """The offer carries an audio m-line: answer with the AI voice as a track."""
        self._track = AiVoiceTrack(self._pull_for_track)
        self.pc.addTrack(self._track)

    def start(self) -> None:
        """The answer has been sent: bound how long the client may take to open ``control``."""
        self._spawn(self._await_control())

    # --- events ----------------------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self.closed:
            return
        if channel.label == CONTROL_LABEL and self._control is None:
            self._control = channel
            channel.on("message", self._on_control_message)
            channel.on("close", self.close)
            if channel.readyState == "open":
                self._open_session()
            else:
                channel.on("open", self._open_session)
        elif channel.label == AUDIO_LABEL and self._audio is None:
            self._audio = channel
            channel.on("message", self._on_audio_message)
            if self._track is None:  # a track client hears the voice on its track instead
                self._spawn(self._pace())
        else:
            channel.close()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not self.closed:
            self._spawn(read_microphone(track, self._on_microphone_pcm))

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.close()

    def _open_session(self) -> None:
        if self._session is not None or self.closed:
            return
        self._session = self._sessions.open_session(self)
        log.info(
            "conversation connection opened transport=webrtc remote=%s",
            self._ip,
            extra={"event": "conversation_opened", "transport": "webrtc", "remote": self._ip},
        )
        self._control_opened.set()
        self._consumer = asyncio.get_running_loop().create_task(self._consume_inbox(self._session))

    def _on_control_message(self, payload: str | bytes) -> None:
        if len(payload) > self._limits.max_message_bytes:
            log.info("webrtc client %s sent a control message too big; closing", self._ip)
            self.close()
            return
        try:
            self._inbox.put_nowait(_Message(payload))
        except asyncio.QueueFull:
            log.info("webrtc client %s floods control; closing", self._ip)
            self.close()

    def _on_audio_message(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            self.dropped_audio_frames += 1
            return
        frame = decode_audio_frame(payload)
        if isinstance(frame, AudioFrame):
            self._queue_audio(frame.turn_id, frame.audio)
        else:
            self.dropped_audio_frames += 1

    def _on_microphone_pcm(self, pcm: bytes) -> None:
        # A track carries no turn id: audio goes to the open input turn, and between turns to
        # the empty turn id, which the engine's server VAD listens to (and otherwise drops).
        self._queue_audio(self._input_turn_id or "", pcm)

    def _queue_audio(self, turn_id: str, audio: bytes) -> None:
        if self._session is None:
            self.dropped_audio_frames += 1
            return
        try:
            self._inbox.put_nowait(_Audio(turn_id, audio))
        except asyncio.QueueFull:
            self.dropped_audio_frames += 1

    def _pull_for_track(self) -> QueuedFrame | None:
        # The track hands the frame to the RTP sender as soon as it is returned.
        frame = self._voice.pop()
        if frame is not None:
            self._frame_written(frame)
        return frame

    def _frame_written(self, frame: QueuedFrame) -> None:
        self._voice.sent(frame)
        if self._voice.unsent(frame.turn_id) == 0:
            drained = self._voice_drained.pop(frame.turn_id, None)
            if drained is not None:
                drained.set()

    def _wake_drained(self) -> None:
        """Release the waits of turns whose audio is all out, or void (aborted, superseded,
        or the peer closed)."""
        for turn_id in [t for t in self._voice_drained if self._voice.unsent(t) == 0]:
            self._voice_drained.pop(turn_id).set()

    # --- tasks -----------------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coroutine))

    async def _await_control(self) -> None:
        try:
            await asyncio.wait_for(self._control_opened.wait(), self._limits.control_open_timeout_s)
        except TimeoutError:
            log.info("webrtc client %s never opened control; closing", self._ip)
            self.close()

    async def _consume_inbox(self, session: SessionHandler) -> None:
        while not self.closed:
            item = await self._inbox.get()
            self._handling = True
            try:
                if isinstance(item, _Message):
                    await session.handle_message(item.payload)
                else:
                    await session.handle_audio(item.turn_id, item.audio)
            except Exception:
                log.exception("conversation session failed on a webrtc message")
            finally:
                self._handling = False

    async def _stop_consumer(self) -> None:
        """Let the message being handled finish (bounded), so the engine is never cut off
        mid-command; an idle consumer is simply cancelled."""
        consumer = self._consumer
        if consumer is None or consumer is asyncio.current_task():
            return
        if not self._handling:
            consumer.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(consumer), self._limits.close_grace_s)
        except TimeoutError:
            consumer.cancel()
        except (asyncio.CancelledError, Exception):
            pass

    async def _pace(self) -> None:
        """Send queued voice frames on ``audio`` in real time, one task for the whole peer."""
        audio = self._audio
        assert audio is not None
        clock = asyncio.get_running_loop().time
        next_send = clock()
        while True:
            frame = self._voice.pop()
            if frame is None:
                self._voice_ready.clear()
                await self._voice_ready.wait()
                next_send = max(next_send, clock())
                continue
            wait_s = next_send - clock()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            if audio.readyState != "open":
                self._voice.clear()
                self._wake_drained()
                return
            if not self._voice.live(frame.turn_id):
                continue  # aborted while this frame waited for its time: never sent
            if audio.bufferedAmount > self._limits.max_unsent_audio_bytes:
                self._voice.dropped_frames += 1
            else:
                audio.send(frame.encode())
            self._frame_written(frame)
            next_send += frame.duration_s

    async def _flush_control(self) -> None:
        control = self._control
        if control is None or control.readyState != "open" or control.bufferedAmount == 0:
            return
        drained = asyncio.Event()
        control.on("bufferedamountlow", drained.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained.wait(), self._limits.flush_on_close_s)

    async def _close(self) -> None:
        self._voice.clear()
        self._wake_drained()  # nothing more will be written: no turn waits for its audio
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._stop_consumer()
        if self._session is not None:
            try:
                await self._session.closed()
            except Exception:
                log.exception("conversation session failed to close")
        await self._flush_control()
        if self._track is not None:
            self._track.stop()
        if self.pc.connectionState == "connected":
            # A polite close (SCTP stream reset). On a transport that is already gone (the
            # browser left) aiortc's reset task would fail unseen and log a traceback;
            # pc.close() below closes the channels either way.
            for channel in (self._control, self._audio):
                if channel is not None:
                    channel.close()
        try:
            await self.pc.close()
        except Exception:
            log.exception("closing a webrtc peer connection failed")
        self._on_closed(self)
        self._done.set()
        if self._session is not None:
            log.info(
                "conversation connection closed transport=webrtc remote=%s",
                self._ip,
                extra={"event": "conversation_closed", "transport": "webrtc", "remote": self._ip},
            )
