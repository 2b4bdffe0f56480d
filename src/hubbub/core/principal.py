"""Who a connection is and what it may do, as established by authentication."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.patterns import ChannelPattern, covers, matches_any
from hubbub.protocol.validation import is_reserved_channel

# The server closes a connection this long before its token's exp (spec section 7, 4002), and
# verification refuses a token with less left than this.
EXPIRY_MARGIN_S: Final = 0.25


@dataclass(frozen=True, slots=True)
class ChannelScope:
    """Channels a credential may use: a channel must be allowed by *every* layer.

    A key contributes one layer (its ``channel_patterns``); a JWT adds a second (its
    ``channels`` claim), so a token can narrow its key's scope but never widen it.
    """

    layers: tuple[tuple[ChannelPattern, ...], ...]

    def allows_channel(self, channel: str) -> bool:
        return all(matches_any(layer, channel) for layer in self.layers)

    def allows_pattern(self, pattern: ChannelPattern) -> bool:
        """Every channel ``pattern`` can match lies inside the scope (exact inclusion)."""
        return all(covers(layer, pattern) for layer in self.layers)


@dataclass(frozen=True, slots=True)
class Principal:
    app_id: str
    peer_id: str
    key_id: str
    actions: frozenset[str]
    scope: ChannelScope
    # Unix seconds; None for credentials that do not expire (publishable keys).
    expires_at: int | None = None
    # Raw JSON object bytes, passed through to welcome.metadata (only this peer sees it).
    welcome_metadata: bytes | None = None
    # Raw JSON object bytes shown to others in presence, direct and (opt-in) message frames.
    peer_metadata: bytes | None = None


def channel_refusal(
    channel: str,
    action: str,
    actions: Collection[str],
    scope: ChannelScope,
    *,
    pattern: ChannelPattern | None = None,
) -> ErrorCode | None:
    """Why a credential may not ``action`` on ``channel``, or None: the one admission rule of
    the WebSocket (subscribe, publish) and the REST API, checked in the spec's order (4.6,
    steps 6-8). With ``pattern`` (a wildcard subscribe, ``channel`` its text) the scope must
    hold every channel the pattern can match."""
    if is_reserved_channel(channel):
        return ErrorCode.CHANNEL_RESERVED
    if action not in actions:
        return ErrorCode.ACTION_NOT_PERMITTED
    allowed = scope.allows_channel(channel) if pattern is None else scope.allows_pattern(pattern)
    if not allowed:
        return ErrorCode.CHANNEL_NOT_AUTHORIZED
    return None
