"""Which endpoint hears which event, and how each event is encoded (no network)."""

from __future__ import annotations

import json

from hubbub.core.events import ChannelEvent, ChannelEventName
from hubbub.hooks.webhook_sender import WebhookSettings
from hubbub.hooks.webhooks import (
    ChannelRoute,
    ConversationRoute,
    WebhookDispatcher,
    encode_channel_event,
)

OCCUPIED = ChannelEventName.CHANNEL_OCCUPIED
ADDED = ChannelEventName.MEMBER_ADDED
CLIENT = ChannelEventName.CLIENT_EVENT


def settings(name: str) -> WebhookSettings:
    return WebhookSettings(name, f"http://127.0.0.1:9/{name}", "secret")


def queued(dispatcher: WebhookDispatcher, index: int) -> list[dict[str, object]]:
    return [json.loads(e) for e in dispatcher.senders[index].queued_events()]


def test_channel_events_encode_in_the_pusher_shape() -> None:
    assert json.loads(encode_channel_event(ChannelEvent(OCCUPIED, "a", "room"))) == {
        "name": "channel_occupied",
        "channel": "room",
    }
    assert json.loads(encode_channel_event(ChannelEvent(ADDED, "a", "room", "bob"))) == {
        "name": "member_added",
        "channel": "room",
        "user_id": "bob",
    }
    published = ChannelEvent(CLIENT, "a", 'r"o\\om', "bob", data=b'{"t":[1,null]}')
    assert json.loads(encode_channel_event(published)) == {
        "name": "client_event",
        "channel": 'r"o\\om',
        "user_id": "bob",
        "data": {"t": [1, None]},  # the payload itself, not a string
    }


def test_routes_filter_by_app_event_and_channel() -> None:
    dispatcher = WebhookDispatcher(
        [
            ChannelRoute("a", settings("all"), frozenset(e.value for e in ChannelEventName)),
            ChannelRoute("a", settings("rooms"), frozenset({"member_added"}), ("rooms/*",)),
            ChannelRoute("b", settings("other"), frozenset({"client_event"})),
        ]
    )
    assert dispatcher.wants("a", OCCUPIED)
    assert dispatcher.wants("b", CLIENT)
    assert not dispatcher.wants("b", OCCUPIED)
    assert not dispatcher.wants("c", CLIENT)
    dispatcher.emit(ChannelEvent(ADDED, "a", "rooms/1", "x"))
    dispatcher.emit(ChannelEvent(ADDED, "a", "rooms/1/deep", "y"))
    dispatcher.emit(ChannelEvent(OCCUPIED, "a", "rooms/2"))
    dispatcher.emit(ChannelEvent(CLIENT, "b", "rooms/1", "z", b"1"))
    dispatcher.emit(ChannelEvent(CLIENT, "c", "rooms/1", "z", b"1"))  # no route: dropped
    assert [e.get("user_id", e["name"]) for e in queued(dispatcher, 0)] == [
        "x",
        "y",
        "channel_occupied",
    ]
    assert [e["user_id"] for e in queued(dispatcher, 1)] == ["x"]
    assert queued(dispatcher, 2) == [
        {"name": "client_event", "channel": "rooms/1", "user_id": "z", "data": 1}
    ]


def test_conversation_events_by_project() -> None:
    dispatcher = WebhookDispatcher(
        [],
        [
            ConversationRoute(
                settings("every"), frozenset({"conversation_started", "tool_called"})
            ),
            ConversationRoute(
                settings("support"), frozenset({"conversation_ended"}), frozenset({"support"})
            ),
        ],
    )
    assert dispatcher.wants_conversation_event("tool_called")
    assert not dispatcher.wants_conversation_event("other")
    dispatcher.emit_conversation_event(
        "conversation_started", "support", "c1", {"user_id": "u", "stage_id": None}
    )
    dispatcher.emit_conversation_event("conversation_ended", "support", "c1", {"reason": "done"})
    dispatcher.emit_conversation_event("conversation_ended", "sales", "c2", {"reason": "done"})
    assert queued(dispatcher, 0) == [
        {
            "name": "conversation_started",
            "conversation_id": "c1",
            "project_id": "support",
            "user_id": "u",
        }
    ]
    assert queued(dispatcher, 1) == [
        {
            "name": "conversation_ended",
            "conversation_id": "c1",
            "project_id": "support",
            "reason": "done",
        }
    ]
