"""The quota check of the prediction routes, as a dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Response

from inferx.auth.dependencies import CurrentPrincipal
from inferx.context import Ctx
from inferx.quotas import service
from inferx.quotas.service import QuotaDecision


async def enforce_prediction_quota(
    principal: CurrentPrincipal, ctx: Ctx, response: Response
) -> QuotaDecision:
    """Counts one prediction request against the caller's per-minute and daily quotas (the
    user's, shared by all of their keys and sessions) and sets the ``RateLimit-*`` headers.
    Raises ``QuotaExceeded`` (429, same headers plus ``Retry-After``) when either is full.

    The headers land on the response only when the route returns data rather than its own
    ``Response`` object; a route that builds a ``Response`` copies ``decision.headers``."""
    decision = await service.consume_prediction(
        ctx, principal.user, api_key_id=principal.api_key_id
    )
    response.headers.update(decision.headers)
    return decision


PredictionQuota = Annotated[QuotaDecision, Depends(enforce_prediction_quota)]
