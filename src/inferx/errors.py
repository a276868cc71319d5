"""Errors as data: one base class, one renderer, RFC 9457 problem+json everywhere."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

log = structlog.get_logger("inferx.errors")

PROBLEM = "application/problem+json"


class InferxError(Exception):
    status = 400
    title = "Bad request"

    def __init__(
        self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.detail)


class NotFound(InferxError):
    status, title = 404, "Not found"


class Unauthorized(InferxError):
    status, title = 401, "Not authenticated"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **extra)


class Forbidden(InferxError):
    status, title = 403, "Forbidden"


class Conflict(InferxError):
    status, title = 409, "Conflict"


class InvalidInput(InferxError):
    status, title = 422, "Invalid input"


class TooManyRequests(InferxError):
    status, title = 429, "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(
            detail,
            headers={"Retry-After": str(max(1, retry_after))},
            retry_after=retry_after,
            **extra,
        )


class ServiceUnavailable(InferxError):
    status, title = 503, "Service unavailable"


def problem_body(
    status: int, title: str, detail: str, instance: str, request_id: str | None, **extra: Any
) -> dict[str, Any]:
    """The RFC 9457 document every error is rendered as (also by the ASGI middleware)."""
    return {
        "type": f"https://inferx.dev/problems/{status}" if status != 500 else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
        **extra,
    }


def database_unavailable(exc: OperationalError) -> InferxError:
    """The database is unreachable, or (SQLite) busy beyond its timeout: retryable, not a bug."""
    log.warning("request.database_unavailable", error=type(exc.orig).__name__)
    return ServiceUnavailable(
        "The database is busy or unreachable; retry shortly.", headers={"Retry-After": "1"}
    )


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem_body(
        status, title, detail, request.url.path, getattr(request.state, "request_id", None), **extra
    )
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM)


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    # The offending input is not echoed back: it may be a password or a huge payload.
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(InferxError)
    async def _inferx(request: Request, exc: InferxError) -> JSONResponse:
        return problem(request, exc.status, exc.title, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_validation_errors(exc.errors())
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return problem(request, 422, "Invalid input", f"{where}: {first['msg']}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem(request, exc.status_code, title, detail, headers=dict(exc.headers or {}))

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        return await _inferx(request, database_unavailable(exc))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.error("request.unhandled_error", error_type=type(exc).__name__, exc_info=exc)
        return problem(
            request,
            500,
            "Internal server error",
            "An unexpected error occurred; quote the request_id.",
        )
