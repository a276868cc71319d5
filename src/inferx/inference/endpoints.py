from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response

from inferx.auth.dependencies import CurrentPrincipal, credentials, resolve_principal
from inferx.context import AppContext, Session
from inferx.db import unit_of_work
from inferx.inference import service
from inferx.inference.schemas import PREDICT_BODY_DOC, PredictionRead, PredictResponse
from inferx.kit.http import API_PREFIX, Paging
from inferx.kit.schemas import Page
from inferx.quotas.service import consume_prediction

router = APIRouter(prefix=API_PREFIX, tags=["predictions"])


# The hot path: dependencies are resolved by hand, in the same functions the injected ones
# use, because FastAPI's dependency solving costs more per request than the model call.
PREDICT_DOC = {**PREDICT_BODY_DOC, "security": [{"APIKeyHeader": []}, {"OAuth2PasswordBearer": []}]}


@router.post("/predict/{model_id}", response_model=PredictResponse, openapi_extra=PREDICT_DOC)
async def predict(
    model_id: uuid.UUID,
    request: Request,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> Response:
    """Predict with a model's default version (or `?version=N`); counts against your quota."""
    body, headers = await answer_predict(request, model_id, version)
    return Response(body, media_type="application/json", headers=headers)


async def answer_predict(
    request: Request, model_id: uuid.UUID, version: int | None
) -> tuple[bytes, dict[str, str]]:
    """The prediction's JSON body and headers: one implementation for this route and for
    ``inference.direct``, which serves the same path without the framework."""
    ctx: AppContext = request.app.state.ctx
    async with unit_of_work(ctx.sessions, lazy=True) as session:
        principal = await resolve_principal(request, ctx, session, *credentials(request))
        quota = await consume_prediction(ctx, principal.user, api_key_id=principal.api_key_id)
        data = service.parse_body(await request.body())
        result = await service.predict(
            ctx, session, principal, model_id, version, data, request.state.request_id
        )
    headers = {**quota.headers, "X-Cache": "HIT" if result["cache_hit"] else "MISS"}
    try:
        body = orjson.dumps(result)
    except orjson.JSONEncodeError:  # e.g. an integer label beyond 64 bits: the slow encoder
        body = json.dumps(result, separators=(",", ":")).encode()
    return body, headers


@router.get("/predictions", response_model=Page[PredictionRead])
async def list_predictions(
    principal: CurrentPrincipal,
    session: Session,
    paging: Paging,
    model_id: uuid.UUID | None = None,
    status: Literal["success", "error"] | None = None,
    since: datetime | None = None,
) -> Page[PredictionRead]:
    """Your prediction history, and predictions made on models you own."""
    items, total = await service.history(
        session,
        principal,
        model_id=model_id,
        status=status,
        since=since,
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)
