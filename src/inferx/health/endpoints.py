"""Liveness (the process answers), readiness (dependencies answer), and the detail of both."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from inferx.context import AppContext, Ctx
from inferx.db import ping

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 2.0


async def _check(name: str, probe: Any) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
        status, error = "ok", None
    except Exception as exc:
        status, error = "down", type(exc).__name__
    result: dict[str, Any] = {
        "name": name,
        "status": status,
        "ms": round((time.perf_counter() - start) * 1000, 2),
    }
    if error:
        result["error"] = error
    return result


async def dependency_checks(ctx: AppContext) -> list[dict[str, Any]]:
    probes = [_check("database", ping(ctx.engine)), _check("storage", ctx.storage.ping())]
    if ctx.redis is not None:
        probes.append(_check("redis", ctx.redis.ping()))
    return list(await asyncio.gather(*probes))


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up (checks no dependency, by design)."""
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(ctx: Ctx) -> JSONResponse:
    """Ready for traffic: 503 while shutting down or when a required dependency is down."""
    if ctx.shutting_down:
        return JSONResponse({"status": "shutting_down"}, status_code=503)
    checks = await dependency_checks(ctx)
    failing = [c["name"] for c in checks if c["status"] != "ok"]
    if failing:
        return JSONResponse(
            {"status": "unavailable", "failing": failing, "checks": checks}, status_code=503
        )
    return JSONResponse({"status": "ok", "checks": checks})


@router.get("/health")
async def health(ctx: Ctx) -> JSONResponse:
    """Per-dependency detail, versions and degraded modes."""
    from inferx import __version__

    checks = await dependency_checks(ctx)
    down = [c for c in checks if c["status"] != "ok"]
    body: dict[str, Any] = {
        "status": "shutting_down" if ctx.shutting_down else ("degraded" if down else "ok"),
        "version": __version__,
        "uptime_s": round(time.monotonic() - ctx.extras.get("started", time.monotonic()), 1),
        "mode": {
            "database": "sqlite" if ctx.settings.is_sqlite else "postgresql",
            "shared_state": "redis" if ctx.redis is not None else "in-process",
        },
        "checks": checks,
        "rate_limiter": {"degraded": ctx.limiter.degraded},
    }
    for name, provider in ctx.extras.get("health", {}).items():
        body[name] = provider()
    return JSONResponse(body, status_code=503 if down or ctx.shutting_down else 200)
