"""Publish and send: a client's messages, and the server's own publishes (REST).

A message is checked (the channel admission rule, the backend's publish proxy), counted against
the app's quota, then handed to the broker: recorded when its channel keeps history or it
carries a ``messageId`` (spec 16.1, 16.2), plain otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from hubbub.core.activity import ChannelActivity
from hubbub.core.authorizer import Authorizer
from hubbub.core.broker import Broker, Direct, Publication
from hubbub.core.connection import Connection
from hubbub.core.events import ChannelEvent, ChannelEventName, EventSink
from hubbub.core.history import Published, Recording, RetentionRules
from hubbub.core.principal import channel_refusal
from hubbub.core.recovery import published_fields
from hubbub.core.replies import Replies, refusal_detail
from hubbub.core.stats import NodeStats
from hubbub.core.usage import AppQuota, UsageStore
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import Publish, Send


class Messaging:
    def __init__(
        self,
        *,
        broker: Broker,
        usage: UsageStore,
        quota: Callable[[str], AppQuota],
        clock: Callable[[], float],
        authorizer: Authorizer,
        events: EventSink,
        activity: ChannelActivity,
        retention: RetentionRules,
        dedup_window_s: float,
        replies: Replies,
        stats: NodeStats,
    ) -> None:
        self._broker = broker
        self._usage = usage
        self._quota = quota
        self._clock = clock
        self._authorizer = authorizer
        self._events = events
        self._activity = activity
        self._retention = retention
        self._dedup_window_s = dedup_window_s
        self._replies = replies
        self._stats = stats

    async def _within_message_quota(self, conn: Connection, request_id: str | None) -> bool:
        """Count a billable message (publish, send); refuse it when over the app's quota."""
        if await self._usage.count_message(conn.app_id, self._quota(conn.app_id), self._clock()):
            return True
        self._replies.error(conn, ErrorCode.OVER_MESSAGE_QUOTA, request_id)
        return False

    async def publish(self, conn: Connection, frame: Publish) -> None:
        refusal = channel_refusal(
            frame.channel, "publish", conn.principal.actions, conn.principal.scope
        )
        if refusal is not None:
            self._replies.error(
                conn, refusal, frame.request_id, refusal_detail(refusal, frame.channel)
            )
            return
        data = frame.data
        if self._authorizer.covers_publish(conn.principal):
            verdict = await self._authorizer.publish(conn.principal, frame.channel, data)
            if verdict.code is not None:
                self._replies.verdict(conn, verdict.code, frame.request_id)
                return
            if verdict.data is not None:
                data = verdict.data
        if not await self._within_message_quota(conn, frame.request_id):
            return
        publication = Publication(
            app_id=conn.app_id,
            channel=frame.channel,
            sender=conn.peer_id,
            data=data,
            sender_metadata=conn.principal.peer_metadata,
            origin_connection=conn.id,
        )
        published = await self.hand_over(publication, frame.message_id)
        self._stats.publications += 1
        if not published.duplicate:
            self._activity.published(conn.app_id, frame.channel)
        self._replies.ack(conn, frame.request_id, published_fields(published))
        if not published.duplicate and self._events.wants(
            conn.app_id, ChannelEventName.CLIENT_EVENT
        ):
            self._events.emit(
                ChannelEvent(
                    ChannelEventName.CLIENT_EVENT,
                    conn.app_id,
                    frame.channel,
                    user_id=conn.peer_id,
                    data=data,
                )
            )

    async def hand_over(
        self, publication: Publication, message_id: str | None, *, count_everywhere: bool = False
    ) -> Published:
        """Give a publication to the broker: recorded when the channel keeps history or the
        publish carries a messageId (spec 16.2), plain otherwise."""
        retention = self._retention.for_channel(publication.app_id, publication.channel)
        if retention is None and message_id is None:
            reached = await self._broker.publish(publication, count_everywhere=count_everywhere)
            return Published(reached, None)
        recording = Recording(retention, message_id, self._dedup_window_s)
        return await self._broker.publish_recorded(
            publication, recording, count_everywhere=count_everywhere
        )

    async def send(self, conn: Connection, frame: Send) -> None:
        if "send" not in conn.principal.actions:
            self._replies.error(conn, ErrorCode.ACTION_NOT_PERMITTED, frame.request_id)
            return
        if not await self._within_message_quota(conn, frame.request_id):
            return
        reached = await self._broker.send_direct(
            Direct(
                app_id=conn.app_id,
                to=frame.to,
                sender=conn.peer_id,
                data=frame.data,
                sender_metadata=conn.principal.peer_metadata,
                origin_connection=conn.id,
            )
        )
        if reached == 0:
            self._replies.error(conn, ErrorCode.PEER_NOT_FOUND, frame.request_id)
            return
        self._replies.ack(conn, frame.request_id)

    async def publish_as_server(
        self, publication: Publication, message_id: str | None
    ) -> Published:
        """A REST publish: counted (never refused), delivered and counted on every node."""
        app_id = publication.app_id
        await self._usage.count_message(app_id, self._quota(app_id), self._clock())
        published = await self.hand_over(publication, message_id, count_everywhere=True)
        if not published.duplicate:
            self._activity.published(app_id, publication.channel)
        return published
