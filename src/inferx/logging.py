"""Structured JSON logs, one event per line, secrets masked before anything is written."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

SECRET_FIELDS = frozenset(
    {
        "authorization",
        "x-api-key",
        "password",
        "current_password",
        "new_password",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "key",
        "api_key",
        "cookie",
        "set-cookie",
    }
)
# Tokens carry recognisable shapes, so they are masked wherever they end up in a message.
SECRET_PATTERNS = re.compile(
    r"(mlp_[A-Za-z0-9_\-]{16,}|rt_[A-Za-z0-9_\-]{16,}|whsec_[A-Za-z0-9+/=_\-]{8,}"
    r"|eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)"
)
MASK = "***"


def mask(value: Any) -> Any:
    if isinstance(value, str):
        return SECRET_PATTERNS.sub(MASK, value)
    if isinstance(value, dict):
        return {k: MASK if str(k).lower() in SECRET_FIELDS else mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value


def _mask_processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: MASK if k.lower() in SECRET_FIELDS else mask(v) for k, v in event.items()}


_access_enabled = True


def access(fields: dict[str, Any]) -> None:
    """The per-request access line: what structlog would write for ``log.info("http.request",
    **fields)`` (same JSON keys, masked), without its processor chain, on every request's path.
    ``fields`` holds only values the middleware builds (numbers, ids, the path, the client)."""
    if not _access_enabled:
        return
    event = {**fields, "path": SECRET_PATTERNS.sub(MASK, fields["path"])}
    event.update(
        event="http.request",
        level="info",
        timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    )
    sys.stdout.write(orjson.dumps(event, default=str).decode() + "\n")
    _flush_soon()


_ACCESS_FLUSH_S = 0.2
_flush_scheduled = False


def _flush_soon() -> None:
    """One flush per ``_ACCESS_FLUSH_S`` under load instead of a write(2) per request; a lone
    request's line still reaches the log within that time."""
    global _flush_scheduled
    if _flush_scheduled:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _flush()
        return
    _flush_scheduled = True
    loop.call_later(_ACCESS_FLUSH_S, _flush)


def _flush() -> None:
    global _flush_scheduled
    _flush_scheduled = False
    with contextlib.suppress(ValueError, OSError):  # stdout closed at exit
        sys.stdout.flush()


def configure(level: str = "INFO") -> None:
    global _access_enabled
    _access_enabled = logging.getLevelName(level) <= logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _mask_processor,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Library loggers (uvicorn errors, alembic) go through the same masking, as JSON.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *processors,
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error", "alembic"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
