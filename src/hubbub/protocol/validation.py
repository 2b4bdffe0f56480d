"""Field validation shared by the WebSocket protocol, the REST API and token minting."""

from __future__ import annotations

from typing import Final

MAX_CHANNEL_BYTES: Final = 256
MAX_PEER_ID_LENGTH: Final = 128
MAX_REQUEST_ID_LENGTH: Final = 128
MAX_PEER_METADATA_BYTES: Final = 4096
MAX_METADATA_BYTES: Final = 8192

RESERVED_PREFIXES: Final = ("_metered/", "_internal/", "_system/")

ACTIONS: Final = frozenset({"publish", "subscribe", "presence", "send"})


def has_control_chars(text: str) -> bool:
    """C0 controls, DEL and C1 controls: the set the SDK rejects client-side."""
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)


def is_valid_channel(name: object) -> bool:
    return (
        isinstance(name, str)
        and name != ""
        and len(name.encode("utf-8", "surrogatepass")) <= MAX_CHANNEL_BYTES
        and not has_control_chars(name)
    )


def is_reserved_channel(name: str) -> bool:
    folded = name.lower()
    return folded.startswith(RESERVED_PREFIXES)


def is_valid_target_peer_id(peer_id: object) -> bool:
    """The ``to`` of a ``send``: what the SDK itself checks (no control chars, <= 128)."""
    return (
        isinstance(peer_id, str)
        and peer_id != ""
        and len(peer_id) <= MAX_PEER_ID_LENGTH
        and not has_control_chars(peer_id)
    )


def is_valid_peer_id(peer_id: object) -> bool:
    """A peer identity Hubbub issues or accepts in a token: printable ASCII, 1..128 chars."""
    return (
        isinstance(peer_id, str)
        and 0 < len(peer_id) <= MAX_PEER_ID_LENGTH
        and all(0x20 <= ord(ch) <= 0x7E for ch in peer_id)
    )


def is_valid_request_id(request_id: object) -> bool:
    return isinstance(request_id, str) and 0 < len(request_id) <= MAX_REQUEST_ID_LENGTH
