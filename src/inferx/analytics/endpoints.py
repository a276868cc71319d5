from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from inferx.analytics import service
from inferx.auth.dependencies import CurrentUser
from inferx.context import Session
from inferx.kit.http import API_PREFIX

router = APIRouter(prefix=f"{API_PREFIX}/models", tags=["analytics"])


@router.get("/{model_id}/analytics")
async def model_analytics(
    model_id: uuid.UUID,
    user: CurrentUser,
    session: Session,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> dict[str, Any]:
    """Totals, success rate, latency percentiles, daily series, recent errors, per version."""
    return await service.model_analytics(session, user, model_id, days)
