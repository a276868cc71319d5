"""What the lifespan builds and every request reaches: one object on ``app.state.ctx``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from inferx.api_keys.usage import KeyUsage
from inferx.auth.cache import AuthCache
from inferx.auth.passwords import Passwords
from inferx.auth.tokens import TokenSigner
from inferx.config import Settings
from inferx.db import unit_of_work
from inferx.events import EventBus
from inferx.inference.engine import Engine
from inferx.inference.log import PredictionLog
from inferx.inference.targets import Targets
from inferx.metrics import Metrics
from inferx.quotas.limiter import Limiter
from inferx.registry.storage import ModelStorage
from inferx.registry.validation import Validator
from inferx.state import SharedState


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis | None
    state: SharedState
    limiter: Limiter
    passwords: Passwords
    signer: TokenSigner
    key_usage: KeyUsage
    auth_cache: AuthCache
    metrics: Metrics
    storage: ModelStorage
    events: EventBus
    validator: Validator
    targets: Targets
    inference: Engine
    prediction_log: PredictionLog
    shutting_down: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


async def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


async def get_session(ctx: Ctx) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(ctx.sessions) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a 2xx means "stored".
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
