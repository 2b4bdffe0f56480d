"""What a client session needs from the server: the narrow view of the
:class:`~hubbub.conversation.session.service.ConversationService` that
:class:`~hubbub.conversation.session.session.Session` is written against."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.project.schema import ApiKey
from hubbub.conversation.runtime.engine import Conversation
from hubbub.conversation.session.limits import SessionLimits
from hubbub.conversation.voice.speech import SpeechStack


class SessionServices(Protocol):
    """What a session needs from the server (the :class:`~.service.ConversationService`)."""

    @property
    def speech(self) -> SpeechStack | None:
        """None: the voice extra is missing, and voice commands say voice is disabled."""
        ...

    @property
    def monotonic(self) -> Callable[[], float]: ...

    @property
    def session_limits(self) -> SessionLimits: ...

    def auth_refused(self, client_ip: str) -> bool:
        """Whether ``client_ip`` has used up its failed auth attempts (spec section 2)."""
        ...

    def auth_failed(self, client_ip: str) -> None:
        """Count one failed auth attempt of ``client_ip`` (successful ones are not counted)."""
        ...

    def find_key(self, api_key: str) -> tuple[LoadedProject, ApiKey] | None: ...

    def create(
        self,
        project: LoadedProject,
        *,
        user_id: str,
        stage_id: str,
        agent_id: str | None,
        timezone: str,
    ) -> Conversation: ...

    async def resume(self, project: LoadedProject, conversation_id: str) -> Conversation | str:
        """The conversation, or why it cannot be resumed (an error text)."""
        ...
