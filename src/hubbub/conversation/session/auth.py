"""What ``auth`` grants (spec section 2): the project of the key, the transports and features
the key permits, and what the session will send and receive as a result."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.project.schema import ApiKey
from hubbub.conversation.protocol import errors
from hubbub.conversation.protocol.commands import SessionSettings
from hubbub.conversation.protocol.errors import CommandError
from hubbub.conversation.protocol.pushes import ProjectSettings


@dataclass(frozen=True, slots=True)
class Access:
    project: LoadedProject
    key: ApiKey
    settings: SessionSettings
    receive_transcripts: bool
    receive_events: bool
    accept_voice: bool  # the session's voice input is heard
    generate_voice: bool  # answers are spoken to it

    def project_settings(self) -> ProjectSettings:
        config = self.project.project
        return ProjectSettings(
            project_id=self.project.id,
            accept_voice=self.accept_voice,
            generate_voice=self.generate_voice,
            asr_config=msgspec.to_builtins(config.asr_config) if self.accept_voice else None,
        )


def grant(
    found: tuple[LoadedProject, ApiKey] | None,
    transport: str,
    settings: SessionSettings,
    *,
    speech_available: bool,
) -> Access:
    """The access a found key grants on ``transport``; refusals raise :class:`CommandError`."""
    if found is None or not found[1].active:
        raise CommandError(errors.INVALID_API_KEY)
    project, key = found
    if not key.permits_transport(transport):
        raise CommandError(errors.transport_not_permitted(transport))
    wanted = (
        (settings.receive_voice_output, "voice_output", errors.NO_VOICE_OUTPUT),
        (settings.receive_transcription_updates, "text_output", errors.NO_TEXT_OUTPUT),
        (settings.receive_events, "events", errors.NO_EVENTS),
    )
    for asked, feature, refusal in wanted:
        if asked and not key.permits(feature):
            raise CommandError(refusal)
    config = project.project
    return Access(
        project=project,
        key=key,
        settings=settings,
        receive_transcripts=_effective(settings.receive_transcription_updates, key, "text_output"),
        receive_events=_effective(settings.receive_events, key, "events"),
        accept_voice=config.accept_voice and settings.send_voice_input and speech_available,
        generate_voice=(
            speech_available
            and config.generate_voice
            and _effective(settings.receive_voice_output, key, "voice_output")
        ),
    )


def _effective(asked: bool | None, key: ApiKey, feature: str) -> bool:
    """An unset setting means: whatever the key permits."""
    return key.permits(feature) if asked is None else asked
