"""A tiny shop backend for the support-desk demo project: ``GET /demo/api/orders/{id}`` (order
status) and ``POST /demo/api/tickets`` (open a support ticket; needs ``X-Demo-Token: demo``).
What a customer's own backend would be, so the demo's webhook tools have something real to call.
"""

from __future__ import annotations

import itertools
import json

from aiohttp import web

from hubbub.protocol.json_depth import TOO_DEEP_MESSAGE, exceeds_json_depth

DEMO_ORDERS: dict[str, dict[str, str]] = {
    "1001": {"item": "noise-cancelling headphones", "status": "shipped", "eta": "Thursday"},
    "1002": {"item": "mechanical keyboard", "status": "processing", "eta": "next week"},
    "1003": {"item": "USB-C dock", "status": "delivered", "eta": "already delivered"},
    "1004": {"item": "4K monitor", "status": "delayed", "eta": "in about ten days"},
}


async def get_order(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    order = DEMO_ORDERS.get(order_id)
    if order is None:
        return web.json_response({"error": "order not found", "orderId": order_id}, status=404)
    return web.json_response({"orderId": order_id, **order})


_ticket_numbers = itertools.count(1)
DEMO_TOKEN = "demo"


async def open_ticket(request: web.Request) -> web.Response:
    if request.headers.get("X-Demo-Token") != DEMO_TOKEN:
        return web.json_response({"error": "missing or wrong X-Demo-Token"}, status=401)
    try:
        text = await request.text()
        if exceeds_json_depth(text):
            raise ValueError(TOO_DEEP_MESSAGE)
        body = json.loads(text)
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    if not isinstance(body, dict) or not isinstance(body.get("problem"), str):
        return web.json_response({"error": "problem (a string) is required"}, status=400)
    ticket = {"ticketId": f"T-{next(_ticket_numbers):04d}", "problem": body["problem"]}
    if isinstance(body.get("orderId"), str):
        ticket["orderId"] = body["orderId"]
    return web.json_response(ticket, status=201)


def add_demo_routes(app: web.Application) -> None:
    app.router.add_get("/demo/api/orders/{order_id}", get_order)
    app.router.add_post("/demo/api/tickets", open_ticket)
