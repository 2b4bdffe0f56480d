"""What the demo pages need from the server, and nothing a page could not be trusted with.

Registered only when ``[demo] enabled`` (demo mode turns it on). A page never sees a secret
key: it asks the server, which signs with the demo app's first secret key.

* ``POST /demo/api/token`` ``{"name"?, "peerId"?}`` → ``{"token", "peerId", "expiresAt"}``: a
  realtime token whose ``peerMetadata`` is ``{"name"}``, so presence and ``fromMetadata``
  carry the name (the chat demo); ICE servers of the key are added as for ``POST /v1/tokens``;
* ``POST /demo/api/devices/{deviceId}/commands`` ``{"command": <any JSON>}`` → a REST-style
  publish to ``devices/{deviceId}/commands`` from ``dashboard`` (the IoT demo's commands);
* ``GET /demo/api/projects`` → ``{"projects": [{"id", "name", "apiKey"}]}``: each conversation
  project with the first of its active API keys (the voice demo's project picker).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from hubbub.api.errors import ApiError, guarded, invalid_request, json_response
from hubbub.auth.keys import ApiKey, KeyRing
from hubbub.auth.tokens import mint_token
from hubbub.auth.turn import with_ice_servers
from hubbub.core.node import Node
from hubbub.protocol.frames import encode_json
from hubbub.protocol.json_depth import TOO_DEEP_MESSAGE, exceeds_json_depth
from hubbub.protocol.validation import is_valid_peer_id

if TYPE_CHECKING:
    from hubbub.conversation.session.service import ConversationService

DEMO_TOKEN_TTL_S: Final = 3600
MAX_NAME_LENGTH: Final = 40
MAX_DEMO_BODY_BYTES: Final = 4096
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class DemoProject:
    id: str
    name: str
    api_key: str


class DemoApi:
    def __init__(
        self,
        node: Node,
        key: ApiKey,
        projects: Callable[[], list[DemoProject]] = list,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``key``: the secret key that signs the demo tokens (of the demo app)."""
        self._node = node
        self._key = key
        self._projects = projects
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_post("/demo/api/token", guarded(self.token))
        router.add_post("/demo/api/devices/{device_id}/commands", guarded(self.device_command))
        router.add_get("/demo/api/projects", guarded(self.projects))

    @staticmethod
    async def _json_object(request: web.Request) -> dict[str, Any]:
        if (request.content_length or 0) > MAX_DEMO_BODY_BYTES:
            raise ApiError(413, "invalid_request", f"the body is over {MAX_DEMO_BODY_BYTES} bytes")
        raw = await request.content.read(MAX_DEMO_BODY_BYTES + 1)
        if len(raw) > MAX_DEMO_BODY_BYTES:
            raise ApiError(413, "invalid_request", f"the body is over {MAX_DEMO_BODY_BYTES} bytes")
        if exceeds_json_depth(raw):
            raise invalid_request(f"the body must be JSON: {TOO_DEEP_MESSAGE}")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise invalid_request("the body must be JSON") from None
        if not isinstance(body, dict):
            raise invalid_request("the body must be a JSON object")
        return body

    async def token(self, request: web.Request) -> web.Response:
        body = await self._json_object(request)
        name = body.get("name")
        if name is not None and (
            not isinstance(name, str)
            or not 1 <= len(name.strip()) <= MAX_NAME_LENGTH
            or not name.isprintable()
        ):
            raise invalid_request(f"name must be 1-{MAX_NAME_LENGTH} printable characters")
        peer_id = body.get("peerId")
        if peer_id is None:
            slug = _SLUG.sub("-", (name or "guest").lower()).strip("-")[:24] or "guest"
            peer_id = f"{slug}-{secrets.token_hex(3)}"
        elif not isinstance(peer_id, str) or not is_valid_peer_id(peer_id):
            raise invalid_request("peerId must be 1-128 printable ASCII characters")
        now = self._clock()
        expires_at = int(now) + DEMO_TOKEN_TTL_S
        metadata = with_ice_servers(None, self._key, peer_id, now, valid_until=expires_at)
        token = mint_token(
            self._key,
            peer_id,
            expires_at=expires_at,
            issued_at=int(now),
            metadata=metadata,
            peer_metadata={"name": name.strip()} if name else None,
        )
        return json_response({"token": token, "peerId": peer_id, "expiresAt": expires_at})

    async def device_command(self, request: web.Request) -> web.Response:
        device_id = request.match_info["device_id"]
        if not _DEVICE_ID.fullmatch(device_id):
            raise invalid_request("deviceId must be 1-64 letters, digits, _ or -")
        body = await self._json_object(request)
        if "command" not in body:
            raise invalid_request("command is required")
        channel = f"devices/{device_id}/commands"
        data = encode_json({"command": body["command"], "sentAt": round(self._clock(), 3)})
        delivered = await self._node.publish_from_server(
            self._key.app_id, channel, data, sender="dashboard"
        )
        return json_response({"channel": channel, "delivered": delivered})

    async def projects(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "projects": [
                    {"id": p.id, "name": p.name, "apiKey": p.api_key} for p in self._projects()
                ]
            }
        )


def demo_projects(service: ConversationService | None) -> list[DemoProject]:
    """Each loaded conversation project with its first active API key, by id."""
    if service is None:
        return []
    found = []
    for loaded in service.projects.values():
        key = next((k.key for k in loaded.project.api_keys if k.active), None)
        if key is not None:
            found.append(DemoProject(loaded.id, loaded.project.name or loaded.id, key))
    return sorted(found, key=lambda p: p.id)


def add_demo_api(
    app: web.Application,
    node: Node,
    keys: KeyRing,
    demo_app: str,
    service: ConversationService | None,
    public_secret_key: tuple[str, str],
) -> dict[str, str]:
    """Serve the demo pages' helpers for ``demo_app``, signed with its first secret key.

    Returns the keys the landing page may show: only while the demo app's secret key is the
    documented public one (``public_secret_key``: id and secret), never a configured secret.
    """
    own = [key for key in keys.keys() if key.app_id == demo_app]  # noqa: SIM118 (KeyRing)
    signer = next(key for key in own if key.kind == "secret")  # the config checked it
    DemoApi(node, signer, lambda: demo_projects(service)).add_routes(app)
    shown: dict[str, str] = {}
    if (signer.id, signer.secret) == public_secret_key:
        shown["secret"] = f"{signer.id}:{signer.secret}"
        publishable = next((key.id for key in own if key.kind == "publishable"), None)
        if publishable is not None:
            shown["publishable"] = publishable
    return shown
