"""The REST control plane (spec section 10), on the same aiohttp app and port as ``/v1``.

Every endpoint except the OpenAPI document needs ``Authorization: Bearer <id>:<secret>`` (or
a bare ``sk_live_…`` secret) of a *secret* key, and the key's ``channel_patterns`` and
``actions`` bound what the call may do. Checks run cheapest-first: the per-IP request limit,
the credential, the per-key limit, the body size, then the body and the scope. The handlers
use only the :class:`~hubbub.core.node.Node`'s public server-side operations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

from hubbub.api.bodies import (
    MAX_BODY_BYTES,
    parse_history_query,
    parse_publish_request,
    parse_token_request,
)
from hubbub.api.errors import ApiError, guarded, invalid_request, json_response, unauthorized
from hubbub.api.openapi import OPENAPI_DOCUMENT
from hubbub.auth.client_ip import TrustedProxies, client_ip
from hubbub.auth.keys import ApiKey, KeyRing
from hubbub.auth.tokens import mint_token
from hubbub.auth.turn import with_ice_servers
from hubbub.core.node import Node
from hubbub.core.principal import ChannelScope, channel_refusal
from hubbub.core.ratelimit import KeyedRateLimiter
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import encode_json
from hubbub.protocol.validation import (
    MAX_METADATA_BYTES,
    is_valid_channel,
    is_valid_peer_id,
)


@dataclass(frozen=True, slots=True)
class RestSettings:
    requests_per_second_per_key: float = 50.0
    request_burst_per_key: int = 100
    requests_per_second_per_ip: float = 50.0
    request_burst_per_ip: int = 100
    # app id -> the plan name GET /v1/usage reports (None when unnamed)
    plan_names: Mapping[str, str | None] = field(default_factory=dict)


def _rate_limited(scope: str) -> ApiError:
    return ApiError(
        429, "rate_limited", f"too many requests for this {scope}", {"Retry-After": "1"}
    )


class RestApi:
    def __init__(
        self,
        node: Node,
        keys: KeyRing,
        settings: RestSettings,
        trusted_proxies: TrustedProxies,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._node = node
        self._keys = keys
        self._settings = settings
        self._trusted = trusted_proxies
        self._clock = clock
        self._per_key = KeyedRateLimiter(
            settings.request_burst_per_key, settings.requests_per_second_per_key
        )
        self._per_ip = KeyedRateLimiter(
            settings.request_burst_per_ip, settings.requests_per_second_per_ip
        )
        self._openapi = encode_json(OPENAPI_DOCUMENT)

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_post("/v1/tokens", guarded(self.create_token))
        router.add_get(r"/v1/channels/{channel:[\s\S]*}/peers", guarded(self.channel_peers))
        router.add_post(r"/v1/channels/{channel:[\s\S]*}/publish", guarded(self.publish))
        router.add_get(r"/v1/channels/{channel:[\s\S]*}/history", guarded(self.history))
        router.add_delete(r"/v1/peers/{peer_id:[\s\S]*}", guarded(self.kick))
        router.add_get("/v1/usage", guarded(self.usage))
        router.add_get("/v1/openapi.json", guarded(self.openapi))

    # --- shared steps ---------------------------------------------------------------------

    def authorize(self, request: web.Request) -> ApiKey:
        """The calling secret key (limits checked), for routes registered elsewhere."""
        return self._authorize(request)

    def _authorize(self, request: web.Request) -> ApiKey:
        now = time.monotonic()
        ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), self._trusted)
        if not self._per_ip.allow(ip, now):
            raise _rate_limited("address")
        key = self._keys.from_bearer(request.headers.get("Authorization"))
        if key is None:
            raise unauthorized()
        if not self._per_key.allow(key.id, now):
            raise _rate_limited("key")
        return key

    async def _body(self, request: web.Request) -> bytes:
        too_large = ApiError(413, "invalid_request", f"the body is over {MAX_BODY_BYTES} bytes")
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _channel(request: web.Request, key: ApiKey, action: str) -> str:
        """The path's channel, checked in the WebSocket's order (spec 4.6, steps 5-8)."""
        channel = request.match_info["channel"]
        if not is_valid_channel(channel):
            raise invalid_request("invalid channel name")
        refusal = channel_refusal(channel, action, key.actions, ChannelScope((key.patterns,)))
        if refusal is ErrorCode.CHANNEL_RESERVED:
            raise ApiError(400, refusal.value, "channel name uses a reserved prefix")
        if refusal is ErrorCode.ACTION_NOT_PERMITTED:
            raise ApiError(403, refusal.value, f"the key does not hold {action!r}")
        if refusal is not None:
            raise ApiError(403, refusal.value, f"not authorized: {channel}")
        return channel

    # --- endpoints ------------------------------------------------------------------------

    async def create_token(self, request: web.Request) -> web.Response:
        key = self._authorize(request)
        wanted = parse_token_request(await self._body(request), key)
        now = self._clock()
        issued_at = int(now)
        expires_at = issued_at + wanted.expires_in_s
        metadata = with_ice_servers(
            wanted.metadata, key, wanted.peer_id, now, valid_until=expires_at
        )
        if metadata is not None and len(encode_json(metadata)) > MAX_METADATA_BYTES:
            raise invalid_request(
                f"metadata with the key's iceServers is larger than {MAX_METADATA_BYTES} bytes"
            )
        token = mint_token(
            key,
            wanted.peer_id,
            expires_at=expires_at,
            issued_at=issued_at,
            channels=wanted.channels,
            permissions=wanted.permissions,
            metadata=metadata,
            peer_metadata=wanted.peer_metadata,
        )
        return json_response({"token": token, "expiresAt": expires_at})

    async def channel_peers(self, request: web.Request) -> web.Response:
        key = self._authorize(request)
        channel = self._channel(request, key, "presence")
        members = await self._node.channel_members(key.app_id, channel)
        peers: list[dict[str, object]] = []
        for member in members:
            entry: dict[str, object] = {"peerId": member.peer_id}
            if member.metadata is not None:
                entry["metadata"] = msgspec.Raw(member.metadata)
            peers.append(entry)
        return json_response({"channel": channel, "peers": peers})

    async def publish(self, request: web.Request) -> web.Response:
        key = self._authorize(request)
        channel = self._channel(request, key, "publish")
        message = parse_publish_request(await self._body(request))
        published = await self._node.publish_as_server(
            key.app_id,
            channel,
            message.data,
            message.sender,
            message.sender_metadata,
            message.message_id,
        )
        answer: dict[str, object] = {"channel": channel, "delivered": published.reached}
        if published.position is not None:
            answer["offset"] = published.position.offset
            answer["epoch"] = published.position.epoch
        if published.duplicate:
            answer["duplicate"] = True
        return json_response(answer)

    async def history(self, request: web.Request) -> web.Response:
        key = self._authorize(request)
        channel = self._channel(request, key, "subscribe")
        query = parse_history_query(request.query)
        page = await self._node.channel_history(
            key.app_id, channel, since=query.since, limit=query.limit
        )
        if page is None:  # a channel without history has none to show
            return json_response(
                {"channel": channel, "epoch": None, "offset": 0, "publications": []}
            )
        publications: list[dict[str, object]] = []
        for record in page.records:
            entry: dict[str, object] = {
                "offset": record.offset,
                "data": msgspec.Raw(record.data),
                "from": record.sender,
                "timestamp": record.timestamp_ms,
            }
            if record.sender_metadata is not None:
                entry["fromMetadata"] = msgspec.Raw(record.sender_metadata)
            publications.append(entry)
        return json_response(
            {
                "channel": channel,
                "epoch": page.position.epoch,
                "offset": page.position.offset,
                "publications": publications,
            }
        )

    async def kick(self, request: web.Request) -> web.Response:
        key = self._authorize(request)
        peer_id = request.match_info["peer_id"]
        if not is_valid_peer_id(peer_id):
            raise invalid_request("peerId must be 1-128 printable ASCII characters")
        closed = await self._node.kick_peer(key.app_id, peer_id)
        return json_response({"peerId": peer_id, "closed": closed})

    async def usage(self, request: web.Request) -> web.Response:
        key = self._authorize(request)
        used = await self._node.usage(key.app_id)
        quota = self._node.quota(key.app_id)
        return json_response(
            {
                "appId": key.app_id,
                "periodStartUnix": used.period_start,
                "periodEndUnix": used.period_end,
                "concurrentNow": used.concurrent_now,
                "peakConcurrent": used.peak_concurrent,
                "messagesUsed": used.messages_used,
                # Hubbub has no overage billing: a limit is a hard limit.
                "overageMessages": 0,
                "overageConnections": 0,
                "plan": {
                    "name": self._settings.plan_names.get(key.app_id),
                    "maxConcurrentConnections": quota.max_concurrent_connections,
                    "maxMessagesPerPeriod": quota.max_messages_per_period,
                    "overagesAllowed": False,
                    "overagesEnabled": False,
                },
            }
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")
