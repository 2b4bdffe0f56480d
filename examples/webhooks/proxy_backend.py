"""A backend that decides for Hubbub: who a browser is (from its session cookie, no JWT), which
rooms it may join, and what it may say.

    python proxy_backend.py      # listens on 127.0.0.1:9000: /connect, /subscribe, /publish

Needs only aiohttp. The sessions are a dict here; yours live in your database.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from aiohttp import web

SESSIONS = {"s3cr3t-ann": {"user": "ann", "name": "Ann", "rooms": ["rooms/1", "rooms/2"]}}
BANNED_WORDS = {"darn"}


async def connect(request: web.Request) -> web.Response:
    # {"app", "key", "remoteAddr", "headers": {"cookie"?, ...}, "query": {...}}
    body = await request.json()
    cookie = SimpleCookie(body["headers"].get("cookie", ""))
    session = SESSIONS.get(cookie["session"].value) if "session" in cookie else None
    if session is None:
        return web.json_response({"error": "not signed in"}, status=401)  # HTTP 401 upgrade
    return web.json_response(
        {
            "peerId": session["user"],
            "channels": ["rooms/*"],  # narrowed further by the key's own channel_patterns
            "peerMetadata": {"name": session["name"]},
        }
    )


async def subscribe(request: web.Request) -> web.Response:
    # {"app", "peerId", "channel", "peerMetadata"?}
    body = await request.json()
    session = next(s for s in SESSIONS.values() if s["user"] == body["peerId"])
    if body["channel"] not in session["rooms"]:
        return web.json_response({"code": "not_a_member"}, status=403)
    return web.json_response({})


async def publish(request: web.Request) -> web.Response:
    # {"app", "peerId", "channel", "data"}
    body = await request.json()
    data = body["data"]
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return web.json_response({"code": "text_messages_only"}, status=403)
    words = data["text"].split()
    if any(word.lower() in BANNED_WORDS for word in words):
        cleaned = " ".join("***" if w.lower() in BANNED_WORDS else w for w in words)
        return web.json_response({"data": {**data, "text": cleaned}})  # published instead
    return web.json_response({})  # published as sent


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/connect", connect)
    app.router.add_post("/subscribe", subscribe)
    app.router.add_post("/publish", publish)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=9000)
