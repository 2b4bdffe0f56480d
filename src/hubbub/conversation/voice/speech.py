"""The speech providers one server shares: ASR, TTS and VAD per project, created on first use.

Projects name their providers (``asrConfig.provider``, ``providers.tts``, an agent's
``voice.provider``); equal configurations share one provider object, so a model is loaded
once per server. :meth:`SpeechStack.warm_up` loads the offline models in the background at
server start, so the first voice turn does not pay for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.voice.providers import registry
from hubbub.conversation.voice.providers.base import (
    AsrProvider,
    EndOfTurnModel,
    ProviderError,
    TtsProvider,
    VadProvider,
    VoiceSettings,
)

log = logging.getLogger(__name__)

VOICE_EXTRA_MISSING = (
    "offline speech is off: the 'voice' extra is not installed (pip install 'hubbub[voice]'); "
    "voice commands answer 'Voice input is disabled for this session'"
)


def speech_stack_for(projects: Sequence[LoadedProject]) -> SpeechStack | None:
    """The shared speech stack, or None (one log line) when the ``voice`` extra is missing."""
    if SpeechStack.available():
        return SpeechStack()
    wanting = [p.project.id for p in projects if p.project.accept_voice or p.project.generate_voice]
    if wanting:
        log.warning(
            "%s; voice projects answer in text only: %s", VOICE_EXTRA_MISSING, ", ".join(wanting)
        )
    else:
        log.info("%s", VOICE_EXTRA_MISSING)
    return None


class SpeechStack:
    def __init__(self) -> None:
        self._asr: dict[str, AsrProvider] = {}
        self._tts: dict[str, TtsProvider] = {}
        self._vad: VadProvider | None = None
        self._end_of_turn: EndOfTurnModel | None = None
        self._end_of_turn_checked = False

    @staticmethod
    def available() -> bool:
        return registry.voice_available()

    @staticmethod
    def _key(name: str, settings: Mapping[str, Any]) -> str:
        return json.dumps([name, dict(settings)], sort_keys=True, default=str)

    def asr_for(self, project: LoadedProject) -> AsrProvider:
        config = project.project.asr_config
        name, settings = config.provider, config.settings
        if project.project.providers.asr is not None:
            name = project.project.providers.asr.provider
            settings = project.project.providers.asr.settings
        key = self._key(name, settings)
        if key not in self._asr:
            self._asr[key] = registry.create_asr(name, settings)
        return self._asr[key]

    def tts_for(
        self, project: LoadedProject, agent_id: str | None
    ) -> tuple[TtsProvider, VoiceSettings]:
        configured = project.project.providers.tts
        name = configured.provider if configured is not None else "piper"
        settings: Mapping[str, Any] = configured.settings if configured is not None else {}
        voice = VoiceSettings()
        agent = project.agents.get(agent_id) if agent_id is not None else None
        if agent is None and project.project.agents:
            agent = project.project.agents[0]
        if agent is not None:
            if agent.voice.provider is not None:
                name, settings = agent.voice.provider, agent.voice.settings
            voice = VoiceSettings(agent.voice.voice, agent.voice.speed, dict(agent.voice.settings))
        key = self._key(name, settings)
        if key not in self._tts:
            self._tts[key] = registry.create_tts(name, settings)
        return self._tts[key], voice

    def vad(self) -> VadProvider:
        if self._vad is None:
            self._vad = registry.create_vad()
        return self._vad

    def end_of_turn(self) -> EndOfTurnModel | None:
        """The semantic end-of-turn model, one for the server; None (said once in the log)
        when it is not installed: end of turn is then silence only."""
        if not self._end_of_turn_checked:
            self._end_of_turn_checked = True
            if registry.smart_turn_available():
                self._end_of_turn = registry.create_end_of_turn()
            else:
                log.info(
                    "semantic end of turn unavailable: install the pipecat-ai wheel of "
                    "constraints/voice-model.txt (make installs it with the voice extra); "
                    "end of turn is silence only"
                )
        return self._end_of_turn

    async def warm_up(self, projects: Sequence[LoadedProject]) -> None:
        """Load every voice project's offline models (errors are logged, never raised)."""
        for project in projects:
            config = project.project
            try:
                if config.accept_voice:
                    asr = self.asr_for(project)
                    warm = getattr(asr, "warm_up", None)
                    if warm is not None:
                        await warm(())  # the general model: off-script speech falls back to it
                        for hints in _stage_hint_sets(project):
                            await warm(hints)
                    if config.asr_config.server_vad:
                        self.vad()
                        model = self.end_of_turn()
                        if model is not None:
                            await model.warm_up()
                if config.generate_voice:
                    tts, _ = self.tts_for(project, None)
                    warm_tts = getattr(tts, "warm_up", None)
                    if warm_tts is not None:
                        await warm_tts()
            except (ProviderError, ValueError) as exc:
                log.warning("project %s: speech warm-up failed: %s", project.id, exc)


def stage_hints(project: LoadedProject, stage_id: str) -> list[str]:
    """Phrases the stage expects: its actions' examples and keywords (for ASR biasing)."""
    hints: list[str] = []
    for action in project.actions_for(stage_id):
        hints.extend(action.trigger.examples)
        hints.extend(action.trigger.keywords)
    return hints


def _stage_hint_sets(project: LoadedProject) -> Iterator[list[str]]:
    for stage_id in project.stages:
        yield stage_hints(project, stage_id)
