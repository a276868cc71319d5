"""Model analytics from daily rollups and latency histograms: fast with millions of rows."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.analytics.histogram import percentile
from inferx.kit.time import utcnow
from inferx.registry.service import load
from inferx.tables import LatencyBucket, Prediction, PredictionRollup, User

RECENT_ERRORS = 10


def _summary(rollups: list[PredictionRollup], buckets: dict[int, int]) -> dict[str, Any]:
    total = sum(r.total for r in rollups)
    errors = sum(r.errors for r in rollups)
    lo = min((r.latency_min_ms for r in rollups), default=None)
    hi = max((r.latency_max_ms for r in rollups), default=None)
    avg = sum(r.latency_sum_ms for r in rollups) / total if total else None
    pct = {
        f"p{int(q * 100)}_inference_time_ms": (
            percentile(buckets, q, lo, hi) if lo is not None and hi is not None else None
        )
        for q in (0.5, 0.95, 0.99)
    }
    return {
        "total_predictions": total,
        "successful_predictions": total - errors,
        "failed_predictions": errors,
        "success_rate": round((total - errors) / total, 4) if total else None,
        "avg_inference_time_ms": round(avg, 3) if avg is not None else None,
        "min_inference_time_ms": lo,
        "max_inference_time_ms": hi,
        **pct,
    }


async def model_analytics(
    session: AsyncSession, user: User, model_id: uuid.UUID, days: int
) -> dict[str, Any]:
    model, _ = await load(session, user, model_id, "view")
    rollups = list(
        (
            await session.execute(
                select(PredictionRollup).where(PredictionRollup.model_id == model.id)
            )
        ).scalars()
    )
    bucket_rows = (
        await session.execute(
            select(LatencyBucket.version, LatencyBucket.bucket, LatencyBucket.count).where(
                LatencyBucket.model_id == model.id
            )
        )
    ).all()
    overall: dict[int, int] = defaultdict(int)
    per_version_buckets: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for version, bucket, count in bucket_rows:
        overall[bucket] += count
        per_version_buckets[version][bucket] += count
    today = utcnow().strftime("%Y-%m-%d")
    first_day = (utcnow() - timedelta(days=days - 1)).strftime("%Y-%m-%d")
    daily: dict[str, list[PredictionRollup]] = defaultdict(list)
    by_version: dict[int, list[PredictionRollup]] = defaultdict(list)
    for r in rollups:
        by_version[r.version].append(r)
        if r.day >= first_day:
            daily[r.day].append(r)
    recent = (
        await session.execute(
            select(Prediction)
            .where(Prediction.model_id == model.id, Prediction.status == "error")
            .order_by(Prediction.created_at.desc())
            .limit(RECENT_ERRORS)
        )
    ).scalars()
    return {
        "model_id": str(model.id),
        **_summary(rollups, overall),
        "predictions_today": sum(r.total for r in daily.get(today, [])),
        "daily": [
            {
                "date": day,
                "total": sum(r.total for r in rs),
                "errors": sum(r.errors for r in rs),
                "avg_inference_time_ms": round(
                    sum(r.latency_sum_ms for r in rs) / max(1, sum(r.total for r in rs)), 3
                ),
            }
            for day, rs in sorted(daily.items())
        ],
        "recent_errors": [
            {
                "id": str(p.id),
                "version": p.version,
                "status_code": p.status_code,
                "error": p.error,
                "created_at": p.created_at.isoformat(),
                "request_id": p.request_id,
            }
            for p in recent
        ],
        "versions": [
            {"version": v, **_summary(rs, per_version_buckets[v])}
            for v, rs in sorted(by_version.items())
        ],
    }
