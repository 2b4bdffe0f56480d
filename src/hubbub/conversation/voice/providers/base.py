"""The interfaces every speech, language and voice-activity provider implements.

The engine works in 16 kHz, 16-bit signed little-endian mono PCM inside (``ENGINE_SAMPLE_RATE``);
conversion to and from client formats and each provider's native format happens at the edges.
Each interface is one small streaming method (plus lifecycle), so a provider module stays a
thin adapter over its library or HTTP API. Provider failures raise :class:`ProviderError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from hubbub.errors import ConversationLayerError

ENGINE_SAMPLE_RATE: Final = 16_000


class ProviderError(ConversationLayerError):
    """A provider could not do its job (network, model, bad configuration)."""


# --- speech recognition ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    is_final: bool


class AsrStream(ABC):
    """One utterance: push audio while the user speaks, then finish for the final text."""

    @abstractmethod
    async def push(self, pcm16k: bytes) -> list[Transcript]:
        """Feed engine-format audio; returns interim results that became available (may be [])."""

    @abstractmethod
    async def finish(self) -> Transcript:
        """No more audio: the final transcript (``is_final=True``, text may be empty)."""

    @abstractmethod
    async def cancel(self) -> None:
        """Drop the utterance and release resources."""


class AsrProvider(ABC):
    @abstractmethod
    async def open_stream(self, *, language: str, hints: Sequence[str] = ()) -> AsrStream:
        """Start an utterance. ``hints`` are phrases the current stage expects (for biasing)."""


# --- speech synthesis -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoiceSettings:
    voice: str | None = None
    speed: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


class TtsProvider(ABC):
    @abstractmethod
    def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[bytes]:
        """Engine-format PCM chunks for ``text`` (one sentence or more), as they are produced.

        Cancellation is closing the iterator (``aclose()``) or cancelling the consuming task:
        the provider must stop work promptly, mid-sentence included.
        """


# --- voice activity detection ---------------------------------------------------------------


class VadStream(ABC):
    @abstractmethod
    def process(self, pcm16k: bytes) -> list[Literal["speech_start", "speech_end"]]:
        """Feed engine-format audio; returns speech boundary events detected in it."""

    @abstractmethod
    def reset(self) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional: most streams hold nothing to release
        """The stream is done: release its model state (a pooled model goes back)."""


class VadProvider(ABC):
    @abstractmethod
    def open_stream(self, *, silence_ms: int = 800) -> VadStream:
        """``silence_ms`` of non-speech after speech ends the utterance."""


# --- end of turn ----------------------------------------------------------------------------


class EndOfTurnModel(ABC):
    """Semantic end of turn: has the speaker finished, judging by how the audio ends?"""

    @abstractmethod
    async def finished_probability(self, pcm16k: bytes) -> float:
        """The utterance so far (engine PCM, the last few seconds suffice): the probability,
        0..1, that the speaker has finished their turn."""

    async def warm_up(self) -> None:  # noqa: B027 - optional: loading lazily is fine
        """Load the model now rather than on the first turn."""


# --- language models ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function the model may call (a project tool or action, see
    :mod:`hubbub.conversation.runtime.functions`). ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for; ``arguments`` is its JSON text, as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    # An assistant message that asked for calls, and the tool message answering one of them.
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


class LlmProvider(ABC):
    @abstractmethod
    def stream_chat(
        self, messages: Sequence[ChatMessage], *, temperature: float | None = None
    ) -> AsyncIterator[str]:
        """Text deltas of the assistant's answer, in order; closing the iterator stops it."""

    def stream_turn(
        self,
        messages: Sequence[ChatMessage],
        *,
        functions: Sequence[FunctionSpec],
        allow_calls: bool = True,
        temperature: float | None = None,
    ) -> AsyncIterator[str | ToolCall]:
        """Text deltas, then the calls the model asked for (complete, in its order), when
        ``functions`` are offered; ``allow_calls`` False asks for text only (the model sees the
        functions but may not call them). A provider without function calling streams text."""
        return self.stream_chat(messages, temperature=temperature)

    @property
    def calls_functions(self) -> bool:
        """Whether :meth:`stream_turn` can return calls (else functions are not offered)."""
        return False

    async def complete(
        self, messages: Sequence[ChatMessage], *, temperature: float | None = None
    ) -> str:
        parts = [delta async for delta in self.stream_chat(messages, temperature=temperature)]
        return "".join(parts)
