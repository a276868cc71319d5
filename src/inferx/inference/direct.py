"""``POST /api/v1/predict/{model_id}`` served straight from ASGI: the hot path.

FastAPI's routing, parameter solving, response classes and outer middleware layers cost more
per request than the model call on this route (bench/README.md), so ``app.InferX`` hands the
requests ``accepts`` to ``predict``, past the framework, through its own
``RequestContextMiddleware``: the request id, body limit, security headers, metrics, access log
and the last-resort 500 stay with it. Caller, quota, body and prediction are handled by
``endpoints.answer_predict``, the very function the FastAPI route calls. Browser requests (an
``Origin`` header: CORS applies) and anything that does not match exactly take the framework's
way, where the same route is declared and documented in OpenAPI.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from typing import NamedTuple
from urllib.parse import parse_qsl

from sqlalchemy.exc import OperationalError
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope, Send

from inferx.errors import PROBLEM, InferxError, InvalidInput, database_unavailable, problem_body
from inferx.inference.endpoints import answer_predict
from inferx.kit.http import API_PREFIX

PREFIX = f"{API_PREFIX}/predict/"
MAX_VERSION = 1_000_000
_DIGITS = re.compile(r"\+?[0-9]{1,16}")
JSON = b"application/json"


class DirectRoute(NamedTuple):
    """What the middleware reads from ``scope["route"]`` for its metrics label."""

    path: str


ROUTE = DirectRoute(f"{API_PREFIX}/predict/{{model_id}}")


def accepts(scope: Scope) -> bool:
    """Is this request served here (else the framework's way)?"""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return False
    model_ref = path[len(PREFIX) :]
    if not model_ref or "/" in model_ref:
        return False
    return not any(name == b"origin" for name, _ in scope["headers"])


async def predict(scope: Scope, receive: Receive, send: Send) -> None:
    scope["route"] = ROUTE
    request = Request(scope, receive)
    try:
        model_id = _model_id(scope["path"][len(PREFIX) :])
        version = _version(scope["query_string"])
        body, headers = await answer_predict(request, model_id, version)
        status, content_type = 200, JSON
    except ClientDisconnect:
        return
    except (InferxError, OperationalError) as exc:
        error = database_unavailable(exc) if isinstance(exc, OperationalError) else exc
        status, content_type, headers = error.status, PROBLEM.encode(), error.headers
        document = problem_body(
            error.status,
            error.title,
            error.detail,
            scope["path"],
            scope["state"].get("request_id"),
            **error.extra,
        )
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    raw_headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    raw_headers += [(_name(k), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


@functools.lru_cache(maxsize=256)
def _name(header: str) -> bytes:
    """A header name as ASGI sends it; the same dozen names on every response."""
    return header.lower().encode("latin-1")


def _model_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise _invalid(
            ["path", "model_id"], "Input should be a valid UUID", "uuid_parsing"
        ) from None


def _version(query_string: bytes) -> int | None:
    """``?version=N`` as FastAPI's ``Query(ge=1, le=1_000_000)`` reads it (the last one wins)."""
    if not query_string:
        return None
    values = [v for k, v in parse_qsl(query_string.decode("latin-1"), True) if k == "version"]
    if not values:
        return None
    text = values[-1].strip()
    if not _DIGITS.fullmatch(text):
        raise _invalid(
            ["query", "version"],
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        )
    version = int(text)
    if version < 1:
        raise _invalid(
            ["query", "version"], "Input should be greater than or equal to 1", "greater_than_equal"
        )
    if version > MAX_VERSION:
        raise _invalid(
            ["query", "version"],
            f"Input should be less than or equal to {MAX_VERSION}",
            "less_than_equal",
        )
    return version


def _invalid(loc: list[str], msg: str, kind: str) -> InvalidInput:
    """The same 422 document FastAPI's request validation gives (``errors.install_handlers``)."""
    return InvalidInput(f"{'.'.join(loc)}: {msg}", errors=[{"loc": loc, "msg": msg, "type": kind}])
