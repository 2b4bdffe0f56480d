"""The conversation service: projects by API key, running conversations, the store, and the
per-IP auth limiter. It is the :class:`~hubbub.conversation.session.channel.SessionFactory` that
transports open sessions with.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.project.schema import ApiKey, LlmConfig
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.protocol import errors, ids
from hubbub.conversation.runtime.backend_events import ConversationEventSink
from hubbub.conversation.runtime.engine import Conversation
from hubbub.conversation.runtime.services import EngineServices, PushBus
from hubbub.conversation.runtime.states import TERMINAL, State
from hubbub.conversation.runtime.store import ConversationRecord, ConversationStore
from hubbub.conversation.runtime.tools import ToolRunner, WebhookRequester
from hubbub.conversation.session.channel import ClientChannel, SessionHandler
from hubbub.conversation.session.limits import DEFAULT_SESSION_LIMITS, SessionLimits
from hubbub.conversation.session.session import Session
from hubbub.conversation.voice.providers.base import LlmProvider
from hubbub.conversation.voice.speech import SpeechStack
from hubbub.core.ratelimit import KeyedRateLimiter

log = logging.getLogger(__name__)

LlmFactory = Callable[[LlmConfig], LlmProvider]


@dataclass(frozen=True, slots=True)
class AuthLimits:
    attempts_per_ip: int = 10  # 0 disables the limit
    window_s: float = 900.0


class ConversationService:
    def __init__(
        self,
        projects: list[LoadedProject],
        store: ConversationStore,
        *,
        renderer: TemplateRenderer | None = None,
        llm_factory: LlmFactory | None = None,
        default_llm: LlmConfig | None = None,
        python_tools: frozenset[str] = frozenset(),
        webhooks: WebhookRequester | None = None,
        auth_limits: AuthLimits = AuthLimits(),
        session_limits: SessionLimits = DEFAULT_SESSION_LIMITS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        speech: SpeechStack | None = None,
        on_message_event: Callable[[Mapping[str, Any]], None] | None = None,
        events: ConversationEventSink | None = None,
        bus: PushBus | None = None,
    ) -> None:
        self.projects = {p.id: p for p in projects}
        self._keys: dict[str, tuple[LoadedProject, ApiKey]] = {
            api_key.key: (p, api_key) for p in projects for api_key in p.project.api_keys
        }
        self._llms: dict[str, LlmProvider] = {}
        for p in projects:
            config = p.project.providers.llm or default_llm
            if config is not None and llm_factory is not None:
                self._llms[p.id] = llm_factory(config)
        self.store = store
        self._webhooks = webhooks
        renderer = renderer or TemplateRenderer()
        self.services = EngineServices(
            on_message_event=on_message_event,
            events=events,
            bus=bus,
            store=store,
            renderer=renderer,
            tools=ToolRunner(renderer, self._webhooks, python_tools),
            llm_for=self._llms.get,
            clock=clock,
            monotonic=monotonic,
        )
        limit = auth_limits.attempts_per_ip
        self._auth_limiter = KeyedRateLimiter(limit, limit / auth_limits.window_s if limit else 0)
        self.session_limits = session_limits
        self._running: dict[str, Conversation] = {}
        # None: the voice extra is missing, and voice commands say voice is disabled.
        self.speech = speech
        self.monotonic = monotonic
        self._warm_up: asyncio.Task[None] | None = None

    def set_base_url(self, url: str) -> None:
        self.services.base_url = url

    async def start(self) -> None:
        await self.store.start()
        if self.speech is not None:
            # In the background: the server answers at once, the models load meanwhile.
            self._warm_up = asyncio.create_task(self.speech.warm_up(list(self.projects.values())))

    async def stop(self) -> None:
        if self._warm_up is not None:
            self._warm_up.cancel()
            await asyncio.gather(self._warm_up, return_exceptions=True)
        for conversation in list(self._running.values()):
            await conversation.stop()
        self._running.clear()
        for llm in self._llms.values():
            close = getattr(llm, "close", None)
            if close is not None:
                await close()
        if self._webhooks is not None:
            await self._webhooks.close()
        await self.store.close()

    # --- sessions --------------------------------------------------------------------------

    def open_session(self, channel: ClientChannel) -> SessionHandler:
        return Session(self, channel, ids.new_id("sess_"))

    def auth_refused(self, client_ip: str) -> bool:
        return not self._auth_limiter.would_allow(client_ip, self.services.monotonic())

    def auth_failed(self, client_ip: str) -> None:
        self._auth_limiter.allow(client_ip, self.services.monotonic())

    def find_key(self, api_key: str) -> tuple[LoadedProject, ApiKey] | None:
        return self._keys.get(api_key)

    # --- conversations ---------------------------------------------------------------------

    def create(
        self,
        project: LoadedProject,
        *,
        user_id: str,
        stage_id: str,
        agent_id: str | None,
        timezone: str,
    ) -> Conversation:
        now = self.services.clock()
        record = ConversationRecord(
            id=ids.new_id("conv_"),
            project_id=project.id,
            user_id=user_id,
            agent_id=agent_id,
            stage_id=stage_id,
            status=str(State.INITIALIZED),
            timezone=timezone,
            created_at=now,
            updated_at=now,
        )
        conversation = Conversation(
            self.services,
            project,
            record,
            state=State.INITIALIZED,
            variables={},
            history=[],
            on_terminal=self._forget,
        )
        conversation.persist()
        self._running[record.id] = conversation
        return conversation

    async def resume(self, project: LoadedProject, conversation_id: str) -> Conversation | str:
        """The conversation, or why it cannot be resumed (an error text)."""
        running = self._running.get(conversation_id)
        if running is not None:
            if running.project.id != project.id:
                return errors.CONVERSATION_NOT_FOUND
            return running
        stored = await self.store.load(conversation_id)
        if stored is None or stored.record.project_id != project.id:
            return errors.CONVERSATION_NOT_FOUND
        status = stored.record.status
        if status in TERMINAL:
            return errors.CONVERSATION_NOT_RESUMABLE.format(status=status)
        if stored.record.stage_id not in project.stages:
            return errors.STAGE_NOT_FOUND
        idle_s = self.services.clock() - stored.record.updated_at
        if idle_s > project.project.conversation_timeout_s:
            conversation = Conversation.restore(self.services, project, stored)
            conversation.terminate_idle()
            await conversation.stop()
            return errors.CONVERSATION_NOT_RESUMABLE.format(status=State.ABORTED)
        # Another session (or this node after a restart) may have raced us here.
        running = self._running.get(conversation_id)
        if running is not None:
            return running
        conversation = Conversation.restore(self.services, project, stored, self._forget)
        self._running[conversation_id] = conversation
        return conversation

    def _forget(self, conversation: Conversation) -> None:
        self._running.pop(conversation.id, None)

    def running(self, conversation_id: str) -> Conversation | None:
        return self._running.get(conversation_id)

    @property
    def running_count(self) -> int:
        return len(self._running)
