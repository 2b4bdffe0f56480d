"""What happens to one conversation, written down: its events (stored in order and pushed to the
client as ``conversation_event``), its record and its stage variables. The store queues every
write, so nothing here waits for the disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hubbub.conversation.protocol import ids
from hubbub.conversation.protocol.pushes import ConversationEvent, Push, optional
from hubbub.conversation.runtime.backend_events import backend_event
from hubbub.conversation.runtime.data import ConversationData
from hubbub.conversation.runtime.services import EngineServices
from hubbub.conversation.runtime.store import EventRecord


class Journal:
    def __init__(
        self,
        services: EngineServices,
        data: ConversationData,
        *,
        publish: Callable[[Push], None],
        status: Callable[[], str],
        next_seq: int = 0,
    ) -> None:
        self._services = services
        self._data = data
        self._publish = publish
        self._status = status  # the conversation's current state, as stored
        self._seq = next_seq

    def event(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        input_turn_id: str | None = None,
        output_turn_id: str | None = None,
    ) -> None:
        services = self._services
        record = EventRecord(
            id=ids.new_id("evnt_"),
            conversation_id=self._data.id,
            seq=self._seq,
            event_type=event_type,
            data=data,
            input_turn_id=input_turn_id,
            output_turn_id=output_turn_id,
            created_at=services.clock(),
        )
        if event_type == "message" and services.on_message_event is not None:
            services.on_message_event(data)
        self._seq += 1
        services.store.append_event(record)
        if services.events is not None:
            self._tell_backend(event_type, data)
        self._publish(
            ConversationEvent(
                conversation_id=self._data.id,
                event_type=event_type,
                event_data=data,
                input_turn_id=optional(input_turn_id),
                output_turn_id=optional(output_turn_id),
            )
        )

    def _tell_backend(self, event_type: str, data: dict[str, Any]) -> None:
        events = self._services.events
        found = backend_event(event_type, data, self._data.record)
        if events is None or found is None or not events.wants_conversation_event(found[0]):
            return
        name, fields = found
        record = self._data.record
        events.emit_conversation_event(name, record.project_id, record.id, fields)

    def persist(self) -> None:
        record = self._data.record
        record.status = self._status()
        record.updated_at = self._services.clock()
        self._services.store.save_conversation(record)

    def save_stage_variables(self, stage_id: str | None = None) -> None:
        data = self._data
        stage = stage_id or data.stage_id
        self._services.store.save_variables(data.id, stage, dict(data.variables.get(stage, {})))
