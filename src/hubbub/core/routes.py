"""The node's local routing tables and the fan-out that writes to local connections.

This is the hot path: a publication is encoded once (one :class:`OutFrame` per variant, with
and without ``fromMetadata``) and the same frame object is pushed to every recipient's sink;
nothing here awaits or creates a task. The ``add_*``/``remove_*`` methods report whether the
node gained its first or lost its last local interest, which is when the node tells the broker.
"""

from __future__ import annotations

from hubbub.core.broker import Direct, Publication
from hubbub.core.connection import Connection, Subscription
from hubbub.core.outbound import OutFrame
from hubbub.core.presence import PresenceDelta
from hubbub.protocol import frames
from hubbub.protocol.patterns import ChannelPattern

Members = dict[Connection, Subscription]

PATTERN_CACHE_MAX_CHANNELS = 10_000


class _PatternIndex:
    """Pattern subscriptions of one app, with a per-channel cache of the matching ones."""

    __slots__ = ("by_text", "cache")

    def __init__(self) -> None:
        self.by_text: dict[str, tuple[ChannelPattern, Members]] = {}
        self.cache: dict[str, list[Members]] = {}

    def matching(self, channel: str) -> list[Members]:
        found = self.cache.get(channel)
        if found is None:
            if len(self.cache) > PATTERN_CACHE_MAX_CHANNELS:
                self.cache.clear()
            found = [m for p, m in self.by_text.values() if p.matches(channel)]
            self.cache[channel] = found
        return found


class LocalRoutes:
    def __init__(self) -> None:
        self._channels: dict[tuple[str, str], Members] = {}
        self._patterns: dict[str, _PatternIndex] = {}
        self._peers: dict[tuple[str, str], set[Connection]] = {}

    # --- membership ------------------------------------------------------------------------

    def add_channel_member(self, conn: Connection, channel: str, sub: Subscription) -> bool:
        """Returns True when this is the node's first local subscriber of the channel."""
        key = (conn.app_id, channel)
        members = self._channels.get(key)
        if members is None:
            self._channels[key] = {conn: sub}
            return True
        members[conn] = sub
        return False

    def remove_channel_member(self, conn: Connection, channel: str) -> bool:
        """Returns True when the node's last local subscriber of the channel left."""
        key = (conn.app_id, channel)
        members = self._channels.get(key)
        if members is None or members.pop(conn, None) is None:
            return False
        if members:
            return False
        del self._channels[key]
        return True

    def add_pattern_member(
        self, conn: Connection, pattern: ChannelPattern, sub: Subscription
    ) -> bool:
        index = self._patterns.get(conn.app_id)
        if index is None:
            index = self._patterns[conn.app_id] = _PatternIndex()
        found = index.by_text.get(pattern.text)
        if found is None:
            index.by_text[pattern.text] = (pattern, {conn: sub})
            index.cache.clear()
            return True
        found[1][conn] = sub
        return False

    def remove_pattern_member(self, conn: Connection, pattern_text: str) -> bool:
        index = self._patterns.get(conn.app_id)
        found = index.by_text.get(pattern_text) if index is not None else None
        if index is None or found is None or found[1].pop(conn, None) is None:
            return False
        if found[1]:
            return False
        del index.by_text[pattern_text]
        index.cache.clear()
        if not index.by_text:
            del self._patterns[conn.app_id]
        return True

    def add_peer_connection(self, conn: Connection) -> bool:
        """Returns True for the peer's first connection on this node."""
        key = (conn.app_id, conn.peer_id)
        peers = self._peers.get(key)
        if peers is None:
            self._peers[key] = {conn}
            return True
        peers.add(conn)
        return False

    def remove_peer_connection(self, conn: Connection) -> bool:
        key = (conn.app_id, conn.peer_id)
        peers = self._peers.get(key)
        if peers is None:
            return False
        peers.discard(conn)
        if peers:
            return False
        del self._peers[key]
        return True

    # --- reading (the listings) -------------------------------------------------------------

    def channel_counts(self, app_id: str) -> dict[str, int]:
        """The app's concrete channels with local subscribers, and how many connections each
        (not counting connections the node is closing)."""
        counts: dict[str, int] = {}
        for (app, channel), members in self._channels.items():
            if app == app_id:
                count = sum(1 for conn in members if not (conn.closed or conn.closing))
                if count:
                    counts[channel] = count
        return counts

    # --- fan-out ---------------------------------------------------------------------------

    def deliver_publication(self, publication: Publication) -> int:
        app_id, channel = publication.app_id, publication.channel
        exact = self._channels.get((app_id, channel))
        index = self._patterns.get(app_id)
        groups: list[Members] = [exact] if exact else []
        if index is not None:
            groups.extend(index.matching(channel))
        if not groups:
            return 0
        plain: OutFrame | None = None
        with_metadata: OutFrame | None = None
        metadata = publication.sender_metadata
        origin = publication.origin_connection
        position = publication.position
        # One offset per publication: both variants carry it, each still encoded once.
        offset, epoch = (position.offset, position.epoch) if position else (0, None)
        seen: set[Connection] | None = set() if len(groups) > 1 else None
        reached = 0
        for members in groups:
            for conn, sub in members.items():
                if conn.id == origin:
                    continue
                if seen is not None:
                    if conn in seen:
                        continue
                    seen.add(conn)
                if metadata is not None and sub.include_sender_metadata:
                    if with_metadata is None:
                        with_metadata = OutFrame(
                            frames.message(
                                channel,
                                publication.sender,
                                publication.data,
                                metadata,
                                offset or None,
                                epoch,
                            )
                        )
                    frame = with_metadata
                else:
                    if plain is None:
                        plain = OutFrame(
                            frames.message(
                                channel,
                                publication.sender,
                                publication.data,
                                None,
                                offset or None,
                                epoch,
                            )
                        )
                    frame = plain
                if offset and (sub.held_messages is not None or offset <= sub.replayed_through):
                    # A subscription reading its replay holds live copies until it is done;
                    # copies already replayed are dropped (no duplicate at the seam).
                    if sub.held_messages is not None:
                        sub.held_messages.append((offset, frame))
                        continue
                    if epoch == sub.replayed_epoch:
                        continue
                conn.sink.push(frame)
                conn.frames_out += 1
                reached += 1
        return reached

    def deliver_direct(self, direct: Direct) -> int:
        conns = self._peers.get((direct.app_id, direct.to))
        if not conns:
            return 0
        frame = OutFrame(frames.direct(direct.sender, direct.data, direct.sender_metadata))
        reached = 0
        for conn in conns:
            if conn.id != direct.origin_connection and not conn.closed:
                conn.sink.push(frame)
                conn.frames_out += 1
                reached += 1
        return reached

    def deliver_presence(self, delta: PresenceDelta) -> None:
        members = self._channels.get((delta.app_id, delta.channel))
        if not members:
            return
        frame = OutFrame(
            frames.presence(
                delta.channel,
                [frames.presence_entry(e.peer_id, e.metadata) for e in delta.joined],
                [frames.presence_entry(e.peer_id, e.metadata) for e in delta.left],
            )
        )
        for conn, sub in members.items():
            if conn.peer_id == delta.subject or not conn.sees_presence:
                continue
            if sub.held_presence is not None:
                sub.held_presence.append(frame)
            else:
                conn.sink.push(frame)
                conn.frames_out += 1

    def disconnect_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int:
        conns = [c for c in self._peers.get((app_id, peer_id), ()) if not (c.closed or c.closing)]
        for conn in conns:
            conn.closing = True
            conn.sink.close(code, reason)
        return len(conns)
