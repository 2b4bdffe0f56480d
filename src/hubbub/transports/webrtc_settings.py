"""The WebRTC endpoint's settings and their defaults (the one place they are written).

No aiortc here: the configuration reads these defaults without loading the WebRTC stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_STUN_URL = "stun:stun.l.google.com:19302"
DEFAULT_ICE_GATHERING_TIMEOUT_MS = 5000.0


@dataclass(frozen=True, slots=True)
class PeerLimits:
    # The client must open ``control`` this soon after the answer, or the connection is closed.
    control_open_timeout_s: float = 15.0
    # Client messages waiting for the engine; past this, audio is dropped and control floods
    # close the connection.
    inbox_size: int = 512
    # A longer control message closes the connection, as a larger frame closes /ws (1009).
    max_message_bytes: int = 1_048_576
    # Unsent control bytes before the client counts as a slow consumer and is disconnected.
    slow_consumer_bytes: int = 1_048_576
    max_queued_voice_s: float = 120.0
    # Voice frames not yet handed to the network on ``audio`` (congestion): past this, frames
    # are dropped rather than queued, since late audio is worse than missing audio.
    max_unsent_audio_bytes: int = 64_000
    # How long a closing connection waits for the engine to finish the message in hand.
    close_grace_s: float = 5.0
    # How long a closing connection waits for control messages already queued (such as the
    # error that explains the close) to be handed to the network.
    flush_on_close_s: float = 1.0


@dataclass(frozen=True, slots=True)
class WebRtcSettings:
    stun_url: str = DEFAULT_STUN_URL  # empty: no STUN, host candidates only
    ice_gathering_timeout_s: float = DEFAULT_ICE_GATHERING_TIMEOUT_MS / 1000
    max_peer_connections: int = 100
    max_peer_connections_per_ip: int = 10
    peer: PeerLimits = field(default_factory=PeerLimits)
