"""The application factory. Connections, pools and caches are built in the lifespan."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from starlette.types import ASGIApp, Receive, Scope, Send

from inferx import __version__
from inferx import logging as inferx_logging
from inferx.analytics.endpoints import router as analytics_router
from inferx.api_keys.endpoints import router as api_keys_router
from inferx.api_keys.usage import KeyUsage
from inferx.auth.cache import AuthCache
from inferx.auth.endpoints import router as auth_router
from inferx.auth.passwords import Passwords
from inferx.auth.tokens import TokenSigner
from inferx.config import Settings
from inferx.context import AppContext
from inferx.db import create_engine, create_sessionmaker
from inferx.errors import install_handlers
from inferx.events import create_event_bus
from inferx.health.endpoints import router as health_router
from inferx.inference import direct
from inferx.inference.endpoints import router as inference_router
from inferx.inference.engine import Engine
from inferx.inference.log import PredictionLog
from inferx.inference.results import create_result_cache
from inferx.inference.targets import Targets
from inferx.inference.v2 import router as v2_router
from inferx.jobs.endpoints import router as jobs_router
from inferx.jobs.runtime import start_background, stop_background
from inferx.kit.http import API_PREFIX
from inferx.metrics import Metrics
from inferx.middleware import RequestContextMiddleware
from inferx.quotas.endpoints import router as quotas_router
from inferx.quotas.limiter import Limiter
from inferx.registry.endpoints import router as models_router
from inferx.registry.storage import create_storage
from inferx.registry.validation import Validator
from inferx.state import MemoryState, RedisState, SharedState
from inferx.users.endpoints import router as admin_router
from inferx.webhooks.endpoints import router as webhooks_router

DOCS_ASSETS = "/_docs-assets"
DESCRIPTION = (
    "Turn a trained model file into a secured, versioned, rate-limited, observable HTTP endpoint. "
    "Authenticate with `Authorization: Bearer <access token>` or `X-API-Key: mlp_...`."
)


class InferX(FastAPI):
    """FastAPI, with the hot route (``inference.direct``) served before the framework and its
    own middleware layers (server errors, telemetry, body limits): ``hot`` is that route behind
    the same ``RequestContextMiddleware`` every other request passes."""

    hot: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot is not None and direct.accepts(scope):
            scope["app"] = self  # as Starlette sets it: request.app is this app
            await self.hot(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> InferX:
    settings = settings or Settings()
    inferx_logging.configure(settings.log_level)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = await _build_context(settings, metrics)
        app.state.ctx = ctx
        ctx.key_usage.start()
        ctx.prediction_log.start()
        for part in (ctx.auth_cache, ctx.targets, ctx.inference):
            part.subscribe(ctx.events)
        await ctx.events.start()
        await start_background(ctx)  # batch jobs and webhook deliveries
        if settings.inference_eager_start:
            ctx.inference.start_in_background()
        # What start-up built lives as long as the app: kept out of the collector's full passes,
        # each of which would otherwise walk those ~170,000 objects (~100 ms of a stalled loop
        # every few seconds under load).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            ctx.shutting_down = True
            await stop_background(ctx)
            await ctx.inference.stop()
            await ctx.prediction_log.stop()
            await ctx.events.stop()
            await ctx.key_usage.stop()
            await ctx.state.close()
            if ctx.redis is not None:
                await ctx.redis.aclose()
            await ctx.engine.dispose()

    app = InferX(
        title="InferX",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    install_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        # Credentials with "*" would make Starlette echo any Origin: never combine them.
        allow_credentials="*" not in settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
        expose_headers=[
            "X-Request-ID",
            "X-Cache",
            "Retry-After",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "RateLimit-Policy",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        ],  # fmt: skip
    )
    upload_limit = settings.max_upload_mb * 1024 * 1024 + 1024 * 1024  # room for multipart framing
    body_limit = int(settings.max_body_mb * 1024 * 1024)
    jobs_limit = max(body_limit, settings.jobs_max_upload_mb * 1024 * 1024 + 1024 * 1024)
    request_context: dict[str, Any] = {
        "metrics": metrics,
        "body_limit": lambda path: (
            upload_limit
            if path.endswith("/models/upload")
            else jobs_limit
            if path == f"{API_PREFIX}/jobs"
            else body_limit
        ),
        "slow_request_ms": settings.slow_request_ms,
    }
    app.add_middleware(RequestContextMiddleware, **request_context)
    app.hot = RequestContextMiddleware(direct.predict, **request_context)

    routers = (
        auth_router, api_keys_router, admin_router, models_router, analytics_router,
        inference_router, v2_router, quotas_router, jobs_router, webhooks_router, health_router,
    )  # fmt: skip
    for router in routers:
        app.include_router(router)
    _install_docs(app)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        ctx = getattr(app.state, "ctx", None)
        if ctx is not None:
            await ctx.inference.refresh_gauges()
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


async def _build_context(settings: Settings, metrics: Metrics) -> AppContext:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.db_url)
    sessions = create_sessionmaker(engine)
    redis: Redis | None = None
    state: SharedState = MemoryState()
    if settings.redis_url:
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            health_check_interval=10,
        )
        state = RedisState(redis, settings.redis_prefix)
    storage = create_storage(settings)
    inference_engine = Engine(
        settings,
        storage,
        create_result_cache(
            redis, settings.redis_prefix, settings.result_cache_ttl_s, settings.result_cache_items
        ),
        metrics.inference,
        solo=lambda: metrics.requests_in_flight == 1,  # batch jobs (none in flight) never poll
    )
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        redis=redis,
        state=state,
        limiter=Limiter(
            settings.redis_url, prefix=settings.redis_prefix, timeout_s=settings.redis_timeout_s
        ),
        passwords=Passwords(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            concurrency=settings.password_hash_concurrency,
        ),
        signer=TokenSigner(
            settings.signing_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_s=settings.access_token_ttl_s,
        ),
        key_usage=KeyUsage(sessions, settings.api_key_usage_flush_s),
        auth_cache=AuthCache(settings.auth_cache_ttl_s, settings.auth_cache_stale_s),
        metrics=metrics,
        storage=storage,
        events=create_event_bus(redis, settings.redis_prefix),
        validator=Validator(settings, concurrency=max(1, os.cpu_count() or 1)),
        targets=Targets(settings.auth_cache_ttl_s, settings.auth_cache_stale_s),
        inference=inference_engine,
        prediction_log=PredictionLog(
            sessions,
            metrics.inference,
            max_buffer=settings.prediction_log_buffer,
            flush_s=settings.prediction_log_flush_s,
        ),
        extras={"started": time.monotonic(), "health": {"inference": inference_engine.health}},
    )


def _install_docs(app: FastAPI) -> None:
    """Swagger UI and ReDoc from files shipped with the package: no CDN needed."""
    app.mount(
        DOCS_ASSETS,
        StaticFiles(directory=str(files("fastapi_offline") / "static")),
        name="docs-assets",
    )

    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="InferX API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="InferX API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger, include_in_schema=False)
    app.add_api_route(f"{API_PREFIX}/docs", swagger, include_in_schema=False)
    app.add_api_route("/redoc", redoc, include_in_schema=False)
