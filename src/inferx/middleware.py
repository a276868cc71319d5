"""ASGI middleware: request id, body limits, security headers, access log, metrics.

Written as plain ASGI (not BaseHTTPMiddleware) so it adds microseconds, not a task per request.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferx.errors import problem_body
from inferx.kit.ids import uuid4_hex
from inferx.logging import access as access_log
from inferx.metrics import Metrics

log = structlog.get_logger("inferx.access")

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
API_CACHE_CONTROL = (b"cache-control", b"no-store")


class BodyTooLarge(HTTPException):
    """An HTTPException so that FastAPI's body parsing re-raises it instead of answering 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds {limit} bytes.")


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        body_limit: Callable[[str], int],
        slow_request_ms: float,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.body_limit = body_limit
        self.slow_request_ms = slow_request_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        path: str = scope["path"]
        status = 500
        started = False
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append(rid_header)
                headers.extend(SECURITY_HEADERS)
                if path.startswith("/api/") and not any(h[0] == b"cache-control" for h in headers):
                    headers.append(API_CACHE_CONTROL)
                message["headers"] = headers
            await send(message)

        limit = self.body_limit(path)
        declared = _content_length(scope)
        self.metrics.requests_in_flight += 1
        try:
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            await self.app(scope, _limited(receive, limit), send_wrapper)
        except BodyTooLarge as exc:
            status = 413
            if not started:
                await _send_problem(
                    send, 413, "Content too large", str(exc.detail), path, request_id, rid_header
                )
        except Exception as exc:  # the last line of defence: never a traceback to the client
            log.error("request.unhandled_error", error_type=type(exc).__name__, exc_info=exc)
            status = 500
            if not started:
                await _send_problem(
                    send,
                    500,
                    "Internal server error",
                    "An unexpected error occurred; quote the request_id.",
                    path,
                    request_id,
                    rid_header,
                )
        finally:
            self.metrics.requests_in_flight -= 1
            self._record(scope, status, start)

    def _record(self, scope: Scope, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"]
        self.metrics.count_http(method, route, status, elapsed)
        ms = round(elapsed * 1000, 3)
        state = scope.get("state", {})
        fields = {
            "request_id": state.get("request_id"),
            "method": method,
            "path": scope["path"],
            "route": route,
            "status": status,
            "duration_ms": ms,
            "user_id": state.get("user_id"),
            "client": (scope.get("client") or ("", 0))[0],
        }
        if ms > self.slow_request_ms:
            log.warning("http.slow_request", **fields)
        access_log(fields)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if REQUEST_ID_RE.match(candidate):
                return candidate
            break
    return uuid4_hex()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _limited(receive: Receive, limit: int) -> Receive:
    received = 0

    async def wrapped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


async def _send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    path: str,
    request_id: str,
    rid_header: tuple[bytes, bytes],
) -> None:
    body = json.dumps(problem_body(status, title, detail, path, request_id)).encode()
    headers: list[Any] = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        rid_header,
        *SECURITY_HEADERS,
    ]
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
