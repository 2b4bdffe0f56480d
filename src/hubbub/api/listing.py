"""The listing endpoints of the REST control plane: who is connected, which channels are
busy, which nodes answer. Cluster-wide: the node asks every other node through the broker
(:meth:`~hubbub.core.node.Node.list_connections` and friends).

* ``GET /v1/connections?channel=&peerId=&limit=`` — any secret key of the app (like a kick);
* ``GET /v1/channels?prefix=&limit=`` — only channels inside the key's ``channel_patterns``;
* ``GET /v1/nodes`` — the nodes that answered, with the app's counts on each.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from aiohttp import web

from hubbub.api.errors import guarded, invalid_request, json_response
from hubbub.auth.keys import ApiKey
from hubbub.core.listing import DEFAULT_LIMIT, MAX_LIMIT
from hubbub.core.node import Node
from hubbub.protocol.validation import MAX_CHANNEL_BYTES, is_valid_channel, is_valid_peer_id

Authorize = Callable[[web.Request], ApiKey]
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def query_limit(
    request: web.Request, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT
) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise invalid_request(f"limit must be an integer from 1 to {maximum}")
    return int(raw)


def query_text(request: web.Request, name: str, max_length: int = 256) -> str | None:
    """A query parameter, None when absent or empty; control characters are refused."""
    value = request.query.get(name)
    if value and (len(value) > max_length or _CONTROL.search(value)):
        raise invalid_request(
            f"{name} must be at most {max_length} characters, none of them control characters"
        )
    return value or None


class ListingApi:
    def __init__(self, node: Node, authorize: Authorize) -> None:
        self._node = node
        self._authorize = authorize

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/v1/connections", guarded(self.connections))
        router.add_get("/v1/channels", guarded(self.channels))
        router.add_get("/v1/nodes", guarded(self.nodes))

    async def connections(self, request: web.Request) -> web.Response:
        key = self._authorize(request)
        channel = query_text(request, "channel")
        if channel is not None and not is_valid_channel(channel):
            raise invalid_request("invalid channel name")
        peer_id = query_text(request, "peerId")
        if peer_id is not None and not is_valid_peer_id(peer_id):
            raise invalid_request("peerId must be 1-128 printable ASCII characters")
        limit = query_limit(request)
        found = await self._node.list_connections(
            key.app_id, channel=channel, peer_id=peer_id, limit=limit
        )
        return json_response(
            {
                "connections": [
                    {
                        "peerId": info.peer_id,
                        "channels": list(info.channels),
                        "remoteAddr": info.remote_addr,
                        "connectedAt": round(info.connected_at, 3),
                        "node": info.node,
                        "framesIn": info.frames_in,
                        "framesOut": info.frames_out,
                    }
                    for info in found
                ]
            }
        )

    async def channels(self, request: web.Request) -> web.Response:
        key = self._authorize(request)
        prefix = query_text(request, "prefix")
        if prefix is not None and (
            len(prefix.encode()) > MAX_CHANNEL_BYTES or not is_valid_channel(prefix)
        ):
            raise invalid_request("prefix must be the start of a valid channel name")
        limit = query_limit(request)
        texts = tuple(pattern.text for pattern in key.patterns)
        scope = () if "**" in texts else texts
        found = await self._node.list_channels(
            key.app_id, prefix=prefix, limit=limit, patterns=scope
        )
        return json_response(
            {
                "channels": [
                    {
                        "channel": summary.channel,
                        "subscribers": summary.subscribers,
                        "peers": summary.peers,
                        "messagesPerSecond": round(summary.messages_per_second, 2),
                    }
                    for summary in found
                ]
            }
        )

    async def nodes(self, request: web.Request) -> web.Response:
        key = self._authorize(request)
        answers = await self._node.list_nodes(key.app_id)
        return json_response(
            {
                "node": self._node.node_id,
                "nodes": [
                    {
                        "node": answer.node,
                        "connections": answer.connection_count,
                        "channels": answer.channel_count,
                    }
                    for answer in sorted(answers, key=lambda a: a.node)
                ],
            }
        )
