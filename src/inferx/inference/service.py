"""Real-time prediction: resolve the version, validate the input, run it, log the outcome."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.auth.dependencies import Principal
from inferx.context import AppContext
from inferx.errors import InferxError, InvalidInput
from inferx.inference import repository
from inferx.inference.engine import Outcome
from inferx.inference.inputs import to_array
from inferx.inference.schemas import PredictionRead
from inferx.inference.targets import Target
from inferx.kit.ids import uuid4
from inferx.kit.time import utcnow
from inferx.tables import Prediction

log = structlog.get_logger("inferx.inference")

MAX_ERROR_CHARS = 2000


def parse_body(raw: bytes) -> Any:
    try:
        body = orjson.loads(raw)  # strict JSON: NaN, Infinity and 64-bit overflows are refused
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("The body is not valid JSON.") from exc
    if not isinstance(body, dict) or "input" not in body:
        raise InvalidInput('The body must be an object like {"input": [[...], ...]}.')
    unknown = set(body) - {"input"}
    if unknown:
        raise InvalidInput(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    return body["input"]


async def predict(
    ctx: AppContext,
    session: AsyncSession,
    principal: Principal,
    model_ref: uuid.UUID | str,
    version: int | None,
    data: Any,
    request_id: str | None,
) -> dict[str, Any]:
    """The response body of ``PredictResponse``'s shape, as plain JSON values: on the hot path
    a second validation pass over data built here would cost more than the model call."""
    start = time.perf_counter()
    target = await ctx.targets.resolve(session, principal.user, model_ref, version)
    outcome = await run_logged(ctx, principal, target, data, request_id, start)
    return {
        "prediction": outcome.prediction,
        "probabilities": outcome.probabilities,
        "classes": outcome.classes if outcome.probabilities is not None else None,
        "model_id": target.model_ref,
        "model_version": target.version,
        "inference_time_ms": round(outcome.compute_ms, 3),
        "cache_hit": outcome.cache_hit,
        "request_id": request_id,
    }


async def run_logged(
    ctx: AppContext,
    principal: Principal,
    target: Target,
    data: Any,
    request_id: str | None,
    start: float,
) -> Outcome:
    """Validate and run ``data`` on ``target``; success or failure, one log entry."""
    rows = len(data) if isinstance(data, list) or hasattr(data, "shape") else 0
    try:
        X = (
            data
            if hasattr(data, "dtype")
            else to_array(data, target.input_schema, ctx.settings.predict_max_rows)
        )
        outcome = await ctx.inference.run(target, X)
    except InferxError as exc:
        _record(ctx, principal, target, request_id, start, rows, exc.status, exc.detail, data=data)
        raise
    except Exception as exc:
        _record(ctx, principal, target, request_id, start, rows, 500, type(exc).__name__, data=data)
        raise
    _record(ctx, principal, target, request_id, start, rows, 200, None, data=data, outcome=outcome)
    return outcome


def _record(
    ctx: AppContext,
    principal: Principal,
    target: Target,
    request_id: str | None,
    start: float,
    rows: int,
    status_code: int,
    error: str | None,
    *,
    data: Any,
    outcome: Outcome | None = None,
) -> None:
    status = "success" if status_code < 400 else "error"
    ctx.metrics.inference.count_prediction(target.model_id, target.version, status)
    keep = ctx.settings.log_prediction_payloads
    ctx.prediction_log.record(
        {
            "id": uuid4(),
            "created_at": utcnow(),
            "model_id": target.model_id,
            "model_version_id": target.model_version_id,
            "version": target.version,
            "user_id": principal.user.id,
            "api_key_id": principal.api_key_id,
            "status": status,
            "status_code": status_code,
            "latency_ms": round((time.perf_counter() - start) * 1000, 3),
            "rows": rows,
            "cache_hit": bool(outcome and outcome.cache_hit),
            "error": error[:MAX_ERROR_CHARS] if error else None,
            "request_id": request_id,
            "inputs": {"input": _payload(data)} if keep else None,
            "outputs": (
                {"prediction": outcome.prediction, "probabilities": outcome.probabilities}
                if keep and outcome
                else None
            ),
        }
    )


def _payload(data: Any) -> Any:
    if isinstance(data, list):
        return data
    return data.tolist() if hasattr(data, "tolist") else None


async def history(
    session: AsyncSession,
    principal: Principal,
    *,
    model_id: uuid.UUID | None,
    status: str | None,
    since: Any,
    limit: int,
    offset: int,
) -> tuple[list[PredictionRead], int]:
    stmt = repository.history(principal.user.id, model_id=model_id, status=status, since=since)
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    rows = await session.execute(
        stmt.order_by(Prediction.created_at.desc(), Prediction.id).limit(limit).offset(offset)
    )
    return [PredictionRead.model_validate(r) for r in rows.scalars()], total
