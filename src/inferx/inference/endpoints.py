from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from inferx.auth.dependencies import CurrentPrincipal
from inferx.context import Ctx, Session
from inferx.inference import service
from inferx.inference.schemas import PREDICT_BODY_DOC, PredictionRead, PredictResponse
from inferx.kit.http import API_PREFIX, Paging
from inferx.kit.schemas import Page
from inferx.quotas.dependencies import PredictionQuota

router = APIRouter(prefix=API_PREFIX, tags=["predictions"])


@router.post("/predict/{model_id}", response_model=PredictResponse, openapi_extra=PREDICT_BODY_DOC)
async def predict(
    model_id: uuid.UUID,
    request: Request,
    principal: CurrentPrincipal,
    quota: PredictionQuota,
    ctx: Ctx,
    session: Session,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> Response:
    """Predict with a model's default version (or `?version=N`); counts against your quota."""
    data = service.parse_body(await request.body())
    result = await service.predict(
        ctx, session, principal, model_id, version, data, request.state.request_id
    )
    headers = {**quota.headers, "X-Cache": "HIT" if result["cache_hit"] else "MISS"}
    return Response(
        json.dumps(result, separators=(",", ":")), media_type="application/json", headers=headers
    )


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
