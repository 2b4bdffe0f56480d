"""A tiny order-status API for the support-desk demo project (``GET /demo/api/orders/{id}``):
what a customer's own backend would be, so the demo's webhook tool has something real to call.
"""

from __future__ import annotations

from aiohttp import web

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


def add_demo_routes(app: web.Application) -> None:
    app.router.add_get("/demo/api/orders/{order_id}", get_order)
