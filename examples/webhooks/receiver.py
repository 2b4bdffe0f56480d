"""A webhook receiver for Hubbub: verifies each request's signature, skips retried requests it
has already handled, and hands every event to a function of yours.

    HUBBUB_WEBHOOK_SECRET=whsec_... python receiver.py      # listens on 127.0.0.1:9000/hooks

Needs only aiohttp.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web

Event = dict[str, Any]


def signature_ok(secret: str, body: bytes, signature: str) -> bool:
    """X-Hubbub-Signature is the hex HMAC-SHA256 of the raw body, keyed with the secret."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def make_app(secret: str, on_event: Callable[[Event], None]) -> web.Application:
    # A request that failed (or timed out) is sent again with the same X-Hubbub-Webhook-Id:
    # remember the recent ids so a retry of a request already handled is not handled twice.
    seen: OrderedDict[str, None] = OrderedDict()

    async def hooks(request: web.Request) -> web.Response:
        body = await request.read()  # the raw bytes: the signature covers exactly these
        if not signature_ok(secret, body, request.headers.get("X-Hubbub-Signature", "")):
            return web.Response(status=401, text="bad signature")
        webhook_id = request.headers.get("X-Hubbub-Webhook-Id", "")
        if webhook_id in seen:
            return web.Response(status=200, text="already handled")
        payload = json.loads(body)
        for event in payload["events"]:  # in order per channel
            on_event(event)
        seen[webhook_id] = None
        if len(seen) > 10_000:
            seen.popitem(last=False)
        # Any 2xx answer means "received"; anything else (or no answer) is retried.
        return web.Response(status=200, text="ok")

    app = web.Application()
    app.router.add_post("/hooks", hooks)
    return app


def print_event(event: Event) -> None:
    name, channel = event["name"], event.get("channel")
    if name == "channel_occupied":
        print(f"{channel}: someone is here")
    elif name == "channel_vacated":
        print(f"{channel}: everyone left")
    elif name == "member_added":
        print(f"{channel}: {event['user_id']} joined")
    elif name == "member_removed":
        print(f"{channel}: {event['user_id']} left")
    elif name == "client_event":
        print(f"{channel}: {event['user_id']} published {event['data']!r}")
    else:  # conversation_started, conversation_ended, tool_called
        print(f"conversation {event['conversation_id']}: {name}")


if __name__ == "__main__":
    web.run_app(
        make_app(os.environ["HUBBUB_WEBHOOK_SECRET"], print_event), host="127.0.0.1", port=9000
    )
