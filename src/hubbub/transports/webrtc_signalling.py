"""WebRTC signalling: ``POST /api/webrtc/offer`` (conversation spec section 7), gather-and-return.

The server applies the client's offer, answers, waits for ICE gathering to complete (at most the
gathering timeout: past it, the answer carries the host candidates, see
:mod:`hubbub.transports.webrtc_gathering`) and replies with the candidates in the answer; there is
no trickle ICE. Replies:

* ``200 {"sdpAnswer": "<sdp>"}``;
* ``400 {"error": "sdpOffer is required and must be a string"}``: no JSON object body, or its
  ``sdpOffer`` missing, empty or not a string;
* ``500 {"error": "WebRTC signaling failed"}``: the offer cannot be applied or answered, or has
  no DataChannels (so ``control`` could never open);
* ``429 {"error": "Too many WebRTC connections from this address"}``: the client's address
  (resolved through trusted proxies) already holds ``max_peer_connections_per_ip``, or made
  more connection attempts (offers and ``/ws`` upgrades together) than the per-IP rate allows;
* ``503 {"error": "Too many WebRTC connections"}``: the node already holds
  ``max_peer_connections`` peer connections.

Every failure closes the half-built peer connection.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from hubbub.auth.client_ip import TrustedProxies, client_ip
from hubbub.conversation.session.channel import SessionFactory
from hubbub.core.ratelimit import KeyedRateLimiter
from hubbub.protocol.json_depth import decode_bounded_json
from hubbub.transports.webrtc import WebRtcPeer
from hubbub.transports.webrtc_gathering import set_answer_and_gather
from hubbub.transports.webrtc_settings import WebRtcSettings

log = logging.getLogger(__name__)

OFFER_PATH = "/api/webrtc/offer"

BAD_OFFER = {"error": "sdpOffer is required and must be a string"}
SIGNALING_FAILED = {"error": "WebRTC signaling failed"}
TOO_MANY_CONNECTIONS = {"error": "Too many WebRTC connections"}
TOO_MANY_FROM_ADDRESS = {"error": "Too many WebRTC connections from this address"}


class WebRtcEndpoint:
    """Accepts offers and keeps every live peer connection, so the count is bounded and the
    server can close them all when it stops."""

    def __init__(
        self,
        sessions: SessionFactory,
        trusted_proxies: TrustedProxies,
        settings: WebRtcSettings,
        connect_limiter: KeyedRateLimiter | None = None,
    ) -> None:
        self._sessions = sessions
        self._trusted = trusted_proxies
        self._settings = settings
        # Shared with ``/ws`` upgrades: offers per client IP (conversation spec section 11).
        self._connect_limiter = connect_limiter
        self._peers: set[WebRtcPeer] = set()

    @property
    def peers(self) -> frozenset[WebRtcPeer]:
        return frozenset(self._peers)

    async def handle_offer(self, request: web.Request) -> web.Response:
        ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), self._trusted)
        limiter = self._connect_limiter
        if limiter is not None and not limiter.allow(ip, time.monotonic()):
            return web.json_response(TOO_MANY_FROM_ADDRESS, status=429)
        try:
            body = await request.json(loads=decode_bounded_json)
        except (ValueError, UnicodeDecodeError, RecursionError):  # deep JSON: a bad body too
            body = None
        offer = body.get("sdpOffer") if isinstance(body, dict) else None
        if not isinstance(offer, str) or not offer:
            return web.json_response(BAD_OFFER, status=400)
        if len(self._peers) >= self._settings.max_peer_connections:
            return web.json_response(TOO_MANY_CONNECTIONS, status=503)
        same_address = sum(1 for peer in self._peers if peer.client_ip == ip)
        if same_address >= self._settings.max_peer_connections_per_ip:
            return web.json_response(TOO_MANY_FROM_ADDRESS, status=429)
        peer = WebRtcPeer(
            RTCPeerConnection(self._configuration()),
            self._sessions,
            ip,
            self._settings.peer,
            self._peers.discard,
        )
        self._peers.add(peer)
        try:
            answer = await self._answer(peer, offer)
        except asyncio.CancelledError:
            peer.close()
            raise
        except Exception as exc:
            log.info("webrtc signalling from %s failed: %r", ip, exc)
            await peer.wait_closed()
            return web.json_response(SIGNALING_FAILED, status=500)
        peer.start()
        return web.json_response({"sdpAnswer": answer})

    async def close_all(self) -> None:
        peers = list(self._peers)
        for peer in peers:
            peer.going_away()
        await asyncio.gather(*(peer.wait_closed() for peer in peers), return_exceptions=True)

    def _configuration(self) -> RTCConfiguration:
        stun = self._settings.stun_url
        # An explicit empty list: aiortc falls back to a public STUN server on None.
        return RTCConfiguration(iceServers=[RTCIceServer(urls=stun)] if stun else [])

    async def _answer(self, peer: WebRtcPeer, offer: str) -> str:
        pc = peer.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        if pc.sctp is None:
            raise ValueError("the offer has no DataChannels")
        if any(t.kind == "audio" for t in pc.getTransceivers()):
            peer.attach_voice_track()
        answer = await pc.createAnswer()
        return await set_answer_and_gather(pc, answer, self._settings.ice_gathering_timeout_s)


def add_webrtc_routes(app: web.Application, endpoint: WebRtcEndpoint) -> None:
    app.router.add_post(OFFER_PATH, endpoint.handle_offer)

    async def close_peers(app: web.Application) -> None:
        await endpoint.close_all()

    # on_shutdown runs before on_cleanup, so sessions close while the engine is still up.
    app.on_shutdown.append(close_peers)
