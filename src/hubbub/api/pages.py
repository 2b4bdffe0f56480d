"""The web pages: the landing page (``/``), the admin console (``/console``), the OpenAPI
reader (``/openapi``), the docs (``/docs/...``), the demo apps (``/demo/...``) and the browser
client module (``/client/hubbub.js``). Plain files shipped as package data
(:mod:`hubbub.console`), served as they are: no build step, nothing from a CDN.

``GET /info`` tells the landing page what is running. The console signs in with a secret key
the user types (or passes as ``/console#key=ID:SECRET``: a fragment never reaches the server);
it talks to the REST API with that key in the ``Authorization`` header only.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

from hubbub.api.errors import json_response

DEMO_PAGES: Final = ("chat", "call", "cursors", "devices", "agents")
_DOC_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# Pages are small and change with the package: revalidate each time (ETag), never stale.
_NO_STALE: Final = {"Cache-Control": "no-cache"}


@dataclass(frozen=True, slots=True)
class SiteInfo:
    version: str
    node: str
    mode: str  # "demo" or "configured"
    broker: str  # "memory" or "redis"
    apps: list[str]
    demo_pages: bool  # the chat / call / cursors / devices / agents demos are served
    voice_demo: bool  # conversations are on, so /demo/voice is served
    projects: list[str]
    # Only in demo mode: the demo app's keys, for the landing page's ready links.
    demo_keys: dict[str, str]


class Pages:
    def __init__(self, static: Path, info: SiteInfo, docs: Path | None) -> None:
        self._static = static
        self._info = info
        self._docs = docs

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/", self._file("index.html"))
        router.add_get("/info", self.site_info)
        router.add_get("/console", self._file("console/index.html"))
        router.add_get("/openapi", self._file("openapi.html"))
        router.add_get("/client/hubbub.js", self._file("client/hubbub.js"))
        if self._info.voice_demo:
            router.add_get("/demo/voice", self._file("demo/voice.html"))
        router.add_get("/docs", self._file("docs.html"))
        router.add_get(r"/docs/{name:[^/]+}.md", self.doc_source)  # before the page route
        router.add_get("/docs/{name}", self._file("docs.html"))
        # Scripts, styles and the pages' own files, under one prefix of their own.
        router.add_static("/static/", self._static)
        if self._info.demo_pages:
            for page in DEMO_PAGES:
                router.add_get(f"/demo/{page}", self._file(f"demo/{page}.html"))

    def _file(self, relative: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        path = self._static / relative

        async def serve(request: web.Request) -> web.FileResponse:
            return web.FileResponse(path, headers=_NO_STALE)

        return serve

    async def site_info(self, request: web.Request) -> web.Response:
        info = self._info
        return json_response(
            {
                "version": info.version,
                "node": info.node,
                "mode": info.mode,
                "broker": info.broker,
                "apps": info.apps,
                "demoPages": [f"/demo/{p}" for p in DEMO_PAGES] if info.demo_pages else [],
                "voiceDemo": info.voice_demo,
                "projects": info.projects,
                "demoKeys": info.demo_keys,
                "docs": self._doc_names(),
            }
        )

    def _doc_names(self) -> list[str]:
        if self._docs is None:
            return []
        return sorted(p.stem for p in self._docs.glob("*.md") if _DOC_NAME.fullmatch(p.stem))

    async def doc_source(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if self._docs is None or not _DOC_NAME.fullmatch(name):
            raise web.HTTPNotFound(text="no such document")
        path = self._docs / f"{name}.md"
        if not path.is_file():
            raise web.HTTPNotFound(text="no such document")
        return web.FileResponse(
            path, headers={**_NO_STALE, "Content-Type": "text/markdown; charset=utf-8"}
        )
