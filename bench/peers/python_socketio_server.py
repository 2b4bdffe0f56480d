"""python-socketio peer for bench/peers.py: rooms on an aiohttp server with uvloop.

The same server as ``socketio_server.mjs``: an HS256 JWT in the CONNECT packet's auth payload
(checked with PyJWT), ``subscribe`` joins a room, ``publish`` emits ``message`` to the room's
other members; both acknowledged (a handler's return value is its ack). WebSocket transport only.

    BENCH_JWT_SECRET=... python bench/peers/python_socketio_server.py [port]
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import jwt
import socketio
import uvloop
from aiohttp import web

SECRET = os.environ["BENCH_JWT_SECRET"]

sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"], cors_allowed_origins=[])


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
    try:
        claims = jwt.decode((auth or {}).get("token", ""), SECRET, algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        raise socketio.exceptions.ConnectionRefusedError("invalid token") from exc
    await sio.save_session(sid, {"peer": str(claims["sub"])})


@sio.event
async def subscribe(sid: str, channel: str) -> bool:
    await sio.enter_room(sid, channel)
    return True


@sio.event
async def publish(sid: str, channel: str, data: Any) -> bool:
    session = await sio.get_session(sid)
    message = {"channel": channel, "from": session["peer"], "data": data}
    await sio.emit("message", message, room=channel, skip_sid=sid)
    return True


async def main(port: int) -> None:
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    assert server is not None
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
