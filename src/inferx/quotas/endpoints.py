from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from inferx.auth.dependencies import CurrentUser
from inferx.context import AppContext, Ctx, Session
from inferx.kit.http import API_PREFIX
from inferx.quotas import service
from inferx.quotas.schemas import UsageRead


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the application's lifespan: the context exists, and outlives this."""
    ctx: AppContext = app.state.ctx
    ctx.extras.setdefault("health", {})["quotas"] = ctx.limiter.status
    try:
        yield
    finally:
        await ctx.limiter.close()


router = APIRouter(prefix=API_PREFIX, tags=["quotas"], lifespan=lifespan)


@router.get("/usage", response_model=UsageRead)
async def get_usage(user: CurrentUser, ctx: Ctx, session: Session) -> UsageRead:
    """Your prediction counts today, limits, remaining, resets, per API key, batch rows."""
    return await service.usage(ctx, session, user)
