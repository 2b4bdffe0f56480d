"""Backend proxies (spec 16.4): a key's backend decides its connects, subscribes and publishes.

Each decision is one ``POST`` with a JSON body, answered within the key's ``proxy_timeout_ms``
over one pooled HTTP client. What each answer means:

==========  ======================================  =====================================
proxy       answer                                  outcome
==========  ======================================  =====================================
connect     200 ``{"peerId", ...}``                 the claims (auth narrows them)
connect     401 / 403                               HTTP 401 ``unauthorized``
connect     anything else, a timeout, no answer     HTTP 503 ``backend_error``
subscribe   200                                     allowed
subscribe   403 ``{"code"?}``                       that code, or ``channel_not_authorized``
publish     200 ``{}`` (or an empty body)           published as sent
publish     200 ``{"data": X}``                     ``X`` is published instead
publish     403 ``{"code"?}``                       that code, or ``action_not_permitted``
both        anything else, a timeout, no answer     ``backend_error``
==========  ======================================  =====================================

A 200 whose body is not a JSON object is "anything else". A code a backend chooses must look
like the protocol's codes (``[a-z0-9_]``, at most 64 characters), else the default is used.
Headers forwarded to a connect proxy are those of the key's allow-list, never all of them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from hubbub.auth.connect import ConnectAttempt, HttpRejection
from hubbub.core.authorizer import ALLOWED, BACKEND_ERROR, Verdict
from hubbub.core.principal import Principal
from hubbub.hooks.http import HookFailure, HookHttpClient, HookResponse
from hubbub.hooks.webhook_sender import LatencyHistogram
from hubbub.protocol.codes import ErrorCode

log = logging.getLogger(__name__)

_CODE: Final = re.compile(r"[a-z0-9_]{1,64}")
_json: Final = msgspec.json.Encoder()
FAILURE_WARNING_INTERVAL_S: Final = 10.0
UNAUTHORIZED: Final = HttpRejection(401, "unauthorized")
UNAVAILABLE: Final = HttpRejection(503, "backend_error")


@dataclass(frozen=True, slots=True)
class KeyProxies:
    """The proxies one key names."""

    app_id: str
    connect_url: str | None = None
    subscribe_url: str | None = None
    publish_url: str | None = None
    timeout_s: float = 1.0
    forwarded_headers: frozenset[str] = frozenset({"cookie", "authorization", "origin"})


class _PublishAnswer(msgspec.Struct):
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class _Refusal(msgspec.Struct):
    code: object = None


_publish_answer: Final = msgspec.json.Decoder(_PublishAnswer)
_refusal: Final = msgspec.json.Decoder(_Refusal)
_object: Final = msgspec.json.Decoder(dict[str, Any])


@dataclass(slots=True)
class ProxyStats:
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (proxy, outcome)
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)  # by proxy


class BackendProxies:
    """Implements core's :class:`~hubbub.core.authorizer.Authorizer` and auth's
    :class:`~hubbub.auth.connect.ConnectProxy`."""

    def __init__(
        self,
        by_key: Mapping[str, KeyProxies],
        *,
        max_data_bytes: int,
        client: HookHttpClient | None = None,
    ) -> None:
        self._by_key = dict(by_key)
        self._max_data_bytes = max_data_bytes or 1_048_576
        self._client = client or HookHttpClient(user_agent="hubbub-proxy", max_connections=200)
        self._last_warning: dict[str, float] = {}
        self.stats = ProxyStats()

    async def close(self) -> None:
        await self._client.close()

    async def _call(
        self, proxy: str, url: str, body: bytes, timeout_s: float, headers: Mapping[str, str]
    ) -> HookResponse | None:
        """The backend's answer, or None when there was none (counted and logged)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            response = await self._client.post(
                url, body, {"Content-Type": "application/json", **headers}, timeout_s
            )
        except HookFailure as failure:
            self._note(proxy, failure.outcome, loop.time() - began)
            now = loop.time()
            if now - self._last_warning.get(proxy, -FAILURE_WARNING_INTERVAL_S) >= (
                FAILURE_WARNING_INTERVAL_S
            ):
                self._last_warning[proxy] = now
                log.warning("%s proxy %s failed: %s", proxy, url, failure)
            return None
        self._note(proxy, f"status_{response.status}", loop.time() - began)
        return response

    def _note(self, proxy: str, outcome: str, seconds: float) -> None:
        self.stats.requests[(proxy, outcome)] += 1
        histogram = self.stats.latency.get(proxy)
        if histogram is None:
            histogram = self.stats.latency[proxy] = LatencyHistogram()
        histogram.observe(seconds)

    @staticmethod
    def _refusal_code(response: HookResponse, default: ErrorCode) -> str:
        try:
            code = _refusal.decode(response.body).code if response.body.strip() else None
        except msgspec.DecodeError:
            code = None
        return code if isinstance(code, str) and _CODE.fullmatch(code) else default.value

    # --- Authorizer ---------------------------------------------------------------------------

    def covers_subscribe(self, principal: Principal) -> bool:
        proxies = self._by_key.get(principal.key_id)
        return proxies is not None and proxies.subscribe_url is not None

    def covers_publish(self, principal: Principal) -> bool:
        proxies = self._by_key.get(principal.key_id)
        return proxies is not None and proxies.publish_url is not None

    async def subscribe(self, principal: Principal, channel: str) -> Verdict:
        proxies = self._by_key.get(principal.key_id)
        if proxies is None or proxies.subscribe_url is None:
            return ALLOWED
        parts = [
            b'{"app":',
            _json.encode(principal.app_id),
            b',"peerId":',
            _json.encode(principal.peer_id),
            b',"channel":',
            _json.encode(channel),
        ]
        if principal.peer_metadata is not None:
            parts += [b',"peerMetadata":', principal.peer_metadata]
        parts.append(b"}")
        response = await self._call(
            "subscribe", proxies.subscribe_url, b"".join(parts), proxies.timeout_s, {}
        )
        if response is None:
            return BACKEND_ERROR
        if response.status == 200:
            return ALLOWED
        if response.status == 403:
            return Verdict(code=self._refusal_code(response, ErrorCode.CHANNEL_NOT_AUTHORIZED))
        return BACKEND_ERROR

    async def publish(self, principal: Principal, channel: str, data: bytes) -> Verdict:
        proxies = self._by_key.get(principal.key_id)
        if proxies is None or proxies.publish_url is None:
            return ALLOWED
        body = b"".join(
            [
                b'{"app":',
                _json.encode(principal.app_id),
                b',"peerId":',
                _json.encode(principal.peer_id),
                b',"channel":',
                _json.encode(channel),
                b',"data":',
                data,
                b"}",
            ]
        )
        response = await self._call("publish", proxies.publish_url, body, proxies.timeout_s, {})
        if response is None:
            return BACKEND_ERROR
        if response.status == 403:
            return Verdict(code=self._refusal_code(response, ErrorCode.ACTION_NOT_PERMITTED))
        if response.status != 200:
            return BACKEND_ERROR
        if not response.body.strip():
            return ALLOWED
        try:
            answer = _publish_answer.decode(response.body)
        except msgspec.DecodeError:
            self._note("publish", "malformed", 0.0)
            return BACKEND_ERROR
        if isinstance(answer.data, msgspec.UnsetType):
            return ALLOWED
        replacement = bytes(answer.data)
        if len(replacement) > self._max_data_bytes:
            self._note("publish", "replacement_too_large", 0.0)
            return BACKEND_ERROR
        return Verdict(data=replacement)

    # --- ConnectProxy -------------------------------------------------------------------------

    def covers_connect(self, key_id: str) -> bool:
        proxies = self._by_key.get(key_id)
        return proxies is not None and proxies.connect_url is not None

    async def identify(
        self, key_id: str, attempt: ConnectAttempt
    ) -> dict[str, Any] | HttpRejection:
        proxies = self._by_key.get(key_id)
        if proxies is None or proxies.connect_url is None:
            return UNAVAILABLE
        allowed = proxies.forwarded_headers
        headers: dict[str, str] = {}
        for raw_name, value in attempt.headers.items():
            name = raw_name.lower()
            if name in allowed:
                # A repeated header is one value (RFC 9110 5.3; cookies join with "; ").
                joiner = "; " if name == "cookie" else ", "
                headers[name] = f"{headers[name]}{joiner}{value}" if name in headers else value
        body = _json.encode(
            {
                "app": proxies.app_id,
                "key": key_id,
                "remoteAddr": attempt.remote_addr,
                "headers": headers,
                "query": dict(attempt.query),
            }
        )
        response = await self._call("connect", proxies.connect_url, body, proxies.timeout_s, {})
        if response is None:
            return UNAVAILABLE
        if response.status in (401, 403):
            return UNAUTHORIZED
        if response.status != 200:
            return UNAVAILABLE
        try:
            return _object.decode(response.body)
        except msgspec.DecodeError:
            self._note("connect", "malformed", 0.0)
            return UNAVAILABLE
