"""History on the subscribe and publish paths (spec 16.1, 16.2): what a subscribe reads, how
its replay and the live messages held meanwhile are queued, and the ack fields.

The node (``hubbub.core.node``) calls these; the seam rule they implement is in its docstring:
a subscription on a channel with history holds its live messages from the moment it is routed
until its page has been read, then gets the page and the held messages newer than the page, and
from then on drops live copies at or below the page's offset.
"""

from __future__ import annotations

from hubbub.core.connection import Connection, Subscription
from hubbub.core.history import HistoryPage, HistoryStore, Published, Retention
from hubbub.core.outbound import OutFrame
from hubbub.protocol import frames
from hubbub.protocol.frames import Subscribe


async def read_for(
    history: HistoryStore | None,
    conn: Connection,
    channel: str,
    retention: Retention,
    frame: Subscribe,
) -> HistoryPage:
    """The history a subscribe asked for: after ``since``, the newest ``rewind``, or (a
    plain subscribe) only the channel's position."""
    assert history is not None, "a channel has a retention only when the node has history"
    if frame.since is not None:
        page = await history.read(conn.app_id, channel, retention, after=frame.since.offset)
        if page.position.epoch != frame.since.epoch:
            # Offsets of another epoch mean nothing here: the client must resync.
            return HistoryPage(page.position, (), False)
        return page
    return await history.read(conn.app_id, channel, retention, limit=frame.rewind)


def release_held(
    conn: Connection, channel: str, sub: Subscription, page: HistoryPage | None
) -> None:
    """Queue the replay, then the live messages held meanwhile that it does not cover."""
    held, sub.held_messages = sub.held_messages or [], None
    if page is None:  # the read failed: deliver what was held, as if never held
        conn.frames_out += len(held)
        for _, frame in held:
            conn.sink.push(frame)
        return
    position = page.position
    sub.replayed_through, sub.replayed_epoch = position.offset, position.epoch
    if conn.closed:
        return
    metadata_wanted = sub.include_sender_metadata
    conn.frames_out += len(page.records)
    for record in page.records:
        conn.sink.push(
            OutFrame(
                frames.message(
                    channel,
                    record.sender,
                    record.data,
                    record.sender_metadata if metadata_wanted else None,
                    record.offset,
                    position.epoch,
                )
            )
        )
    for offset, frame in held:
        if offset > position.offset:
            conn.sink.push(frame)
            conn.frames_out += 1


def published_fields(published: Published) -> dict[str, object] | None:
    """A publish ack's extension fields: the publication's place in the history, and whether
    it was a duplicate (spec 16.1, 16.2). None for a plain publish (the hosted ack)."""
    fields: dict[str, object] = {}
    if published.position is not None:
        fields["offset"] = published.position.offset
        fields["epoch"] = published.position.epoch
    if published.duplicate:
        fields["duplicate"] = True
    return fields or None


def subscribe_fields(
    frame: Subscribe, retention: Retention | None, page: HistoryPage | None
) -> dict[str, object] | None:
    """A subscribe ack's extension fields (spec 16.1). Without history: ``recovered: false``
    when the client asked for ``since``/``rewind``, nothing otherwise."""
    fields: dict[str, object] = {}
    if page is None:
        if frame.since is not None or frame.rewind is not None:
            fields["recovered"] = False
        return fields or None
    if frame.since is not None:
        fields["recovered"] = page.complete
    fields["offset"] = page.position.offset
    fields["epoch"] = page.position.epoch
    return fields
