"""``GET /healthz``: the node is up, and how many realtime connections it holds."""

from __future__ import annotations

from aiohttp import web

from hubbub.core.node import Node


class HealthApi:
    def __init__(self, node: Node) -> None:
        self._node = node

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.health)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "connections": self._node.connection_count})
