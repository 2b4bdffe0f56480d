"""REST errors as data: ``{"error": <code>, "message": <text>}`` with the spec's statuses.

Handlers raise :class:`ApiError` and :func:`guarded` turns it into that JSON body;
:func:`api_errors` does the same for the router's own 404/405 under ``/v1/``. A client never
sees HTML or a stack trace. :func:`guarded` is also the one place a hub error a client can see
becomes an answer: :class:`~hubbub.core.broker.BrokerUnavailable` is 503 ``internal_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from aiohttp import web

from hubbub.core.broker import BrokerUnavailable
from hubbub.errors import HubbubError

log = logging.getLogger(__name__)

API_PREFIX: Final = "/v1/"
_encode = msgspec.json.Encoder().encode


class ApiError(HubbubError):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    response = json_response({"error": error.code, "message": error.message}, error.status)
    response.headers.update(error.headers)
    return response


def invalid_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


UNAUTHORIZED_MESSAGE: Final = "missing or invalid credentials"


def unauthorized() -> ApiError:
    # One answer for every credential problem, so callers cannot probe which keys exist.
    return ApiError(401, "unauthorized", UNAUTHORIZED_MESSAGE, {"WWW-Authenticate": "Bearer"})


def backend_unavailable() -> ApiError:
    return ApiError(503, "internal_error", "the message backend is unavailable, retry shortly")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(handler: Handler) -> Handler:
    """Run a REST handler, answering its :class:`ApiError` (or any surprise) as JSON."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return error_response(error)
        except BrokerUnavailable:
            return error_response(backend_unavailable())
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.path)
            return error_response(ApiError(500, "internal_error", "internal error"))

    return run


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON 404/405 for paths under ``/v1/`` that no route matches; nothing else is touched."""
    unmatched = request.match_info.http_exception
    if unmatched is None or not request.path.startswith(API_PREFIX):
        return await handler(request)
    if isinstance(unmatched, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(unmatched.allowed_methods))
        return error_response(
            ApiError(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here (allowed: {allowed})",
                {"Allow": allowed},
            )
        )
    return error_response(ApiError(404, "not_found", f"no endpoint at {request.path}"))
