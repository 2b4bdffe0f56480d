"""Speaking one AI turn: streamed answer text in, synthesized speech out, sentence by sentence.

The answer text arrives in small deltas; each complete sentence is handed to the TTS provider
as soon as it ends, while the rest of the answer still streams, so the first audio leaves
after the first sentence, not after the whole answer. The turn's first piece is cut even
sooner, at its first clause mark ("Sure, I can check that." starts as "Sure,"): synthesis time
grows with the text, and the first piece is what the user waits for; the next ones are
synthesized while it plays. One task per turn synthesizes the
sentences in order and sends each chunk, converted to the session's receiveAudioFormat, to
the client. Barge-in cancels that task: the provider's iterator is closed mid-sentence.
:meth:`TurnVoice.finish` returns only once the transport has written the last audio, so the
turn (and its ``end_ai_generation_output``) lasts as long as the client hears it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final

from hubbub.conversation.protocol import ids
from hubbub.conversation.protocol.pushes import VoiceChunk
from hubbub.conversation.voice.audio import EngineToClient
from hubbub.conversation.voice.providers.base import ProviderError, TtsProvider, VoiceSettings

log = logging.getLogger(__name__)

# A sentence ends at . ! ? (or a line break) followed by white space; "1.5" does not end one.
_SENTENCE_END: Final = re.compile(r"(?<=[.!?])\s+|\n+")
# The turn's first piece may also end at a clause mark followed by white space ("1,000" no).
_FIRST_PIECE_END: Final = re.compile(r"(?<=[.!?,;:])\s+|\n+")


class TurnVoice:
    """The voice of one output turn. Create it inside the running loop."""

    def __init__(
        self,
        tts: TtsProvider,
        voice: VoiceSettings,
        *,
        audio_format: str,
        send: Callable[[VoiceChunk], None],
        conversation_id: str,
        output_turn_id: str,
        monotonic: Callable[[], float],
        written: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """``written(output_turn_id)`` returns once the transport has written all the turn's
        audio queued so far (paced WebRTC audio leaves in real time, long after synthesis)."""
        self._tts = tts
        self._written = written
        self._voice = voice
        self._format = audio_format
        self._send = send
        self._conversation_id = conversation_id
        self._output_turn_id = output_turn_id
        self._monotonic = monotonic
        self._pending = ""
        self._sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self._queued_any = False
        self._ordinal = 0
        self.first_audio_at: float | None = None
        self.tts_seconds = 0.0
        self._task = asyncio.create_task(self._speak(), name=f"voice {output_turn_id}")

    def feed(self, delta: str) -> None:
        """More answer text; complete sentences (the first clause, for the turn's first
        piece) start synthesizing at once."""
        self._pending += delta
        if not self._queued_any:
            self._pending = self._pending.lstrip()
            cut = _FIRST_PIECE_END.search(self._pending)
            if cut is None:
                return
            self._queue(self._pending[: cut.start()])
            self._pending = self._pending[cut.end() :]
        parts = _SENTENCE_END.split(self._pending)
        self._pending = parts.pop()
        for sentence in parts:
            self._queue(sentence)

    def _queue(self, text: str) -> None:
        if text.strip():
            self._sentences.put_nowait(text.strip())
            self._queued_any = True

    async def finish(self) -> None:
        """The answer text is complete: wait until all of it has been synthesized and sent."""
        self._queue(self._pending)
        self._pending = ""
        self._sentences.put_nowait(None)
        await asyncio.shield(self._task)
        if self._written is not None:
            await self._written(self._output_turn_id)

    def cancel(self) -> None:
        self._task.cancel()

    def _emit(self, audio: bytes, is_final: bool) -> None:
        if self.first_audio_at is None and audio:
            self.first_audio_at = self._monotonic()
        self._send(
            VoiceChunk(
                conversation_id=self._conversation_id,
                output_turn_id=self._output_turn_id,
                chunk_id=ids.new_id("chnk_"),
                audio=audio,
                audio_format=self._format,
                ordinal=self._ordinal,
                is_final=is_final,
            )
        )
        self._ordinal += 1

    async def _speak(self) -> None:
        converter = EngineToClient(self._format)
        try:
            while (sentence := await self._sentences.get()) is not None:
                started = self._monotonic()
                chunks = self._tts.synthesize(sentence, self._voice)
                try:
                    async for pcm in chunks:
                        for piece in converter.convert(pcm):
                            self._emit(piece, is_final=False)
                finally:
                    self.tts_seconds += self._monotonic() - started
                    close = getattr(chunks, "aclose", None)  # stops the provider mid-sentence
                    if close is not None:
                        await close()
            for piece in converter.flush():
                self._emit(piece, is_final=False)
        except ProviderError as exc:  # the text still reaches the client; only speech stops
            log.warning("turn %s: speech synthesis failed: %s", self._output_turn_id, exc)
        self._emit(b"", is_final=True)
