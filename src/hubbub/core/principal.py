"""Who a connection is and what it may do, as established by authentication."""

from __future__ import annotations

from dataclasses import dataclass

from hubbub.protocol.patterns import ChannelPattern, covers, matches_any


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
