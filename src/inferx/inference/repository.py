"""SQL of the prediction log: bulk inserts, rollup upserts, history reads."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.analytics.histogram import bucket_of
from inferx.tables import LatencyBucket, Model, Prediction, PredictionRollup


async def write_log(session: AsyncSession, entries: list[dict[str, Any]]) -> None:
    await session.execute(insert(Prediction), entries)
    rollups: dict[tuple[Any, int, str], list[float]] = {}
    buckets: dict[tuple[Any, int, str, int], int] = defaultdict(int)
    for e in entries:
        if e.get("version") is None:
            continue
        key = (e["model_id"], e["version"], e["created_at"].strftime("%Y-%m-%d"))
        ms = float(e["latency_ms"])
        r = rollups.setdefault(key, [0, 0, 0.0, ms, ms])
        r[0] += 1
        r[1] += e["status"] != "success"
        r[2] += ms
        r[3] = min(r[3], ms)
        r[4] = max(r[4], ms)
        buckets[(*key, bucket_of(ms))] += 1
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    for (model_id, version, day), (total, errors, total_ms, lo, hi) in rollups.items():
        stmt = dialect.insert(PredictionRollup).values(
            model_id=model_id, version=version, day=day, total=total, errors=errors,
            latency_sum_ms=total_ms, latency_min_ms=lo, latency_max_ms=hi,
        )  # fmt: skip
        t = PredictionRollup.__table__.c
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["model_id", "version", "day"],
                set_={
                    "total": t.total + stmt.excluded.total,
                    "errors": t.errors + stmt.excluded.errors,
                    "latency_sum_ms": t.latency_sum_ms + stmt.excluded.latency_sum_ms,
                    "latency_min_ms": _least(
                        dialect, t.latency_min_ms, stmt.excluded.latency_min_ms
                    ),
                    "latency_max_ms": _greatest(
                        dialect, t.latency_max_ms, stmt.excluded.latency_max_ms
                    ),
                },
            )
        )
    for (model_id, version, day, bucket), count in buckets.items():
        stmt = dialect.insert(LatencyBucket).values(
            model_id=model_id, version=version, day=day, bucket=bucket, count=count
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["model_id", "version", "day", "bucket"],
                set_={"count": LatencyBucket.__table__.c.count + stmt.excluded["count"]},
            )
        )


def _least(dialect: Any, a: Any, b: Any) -> Any:
    return func.least(a, b) if dialect is postgresql else func.min(a, b)


def _greatest(dialect: Any, a: Any, b: Any) -> Any:
    return func.greatest(a, b) if dialect is postgresql else func.max(a, b)


def history(
    user_id: uuid.UUID,
    *,
    model_id: uuid.UUID | None,
    status: str | None,
    since: datetime | None,
) -> Select[Prediction]:
    """The caller's own predictions, and every prediction made on models they own."""
    owned = select(Model.id).where(Model.owner_id == user_id)
    stmt = select(Prediction).where(
        or_(Prediction.user_id == user_id, Prediction.model_id.in_(owned))
    )
    if model_id is not None:
        stmt = stmt.where(Prediction.model_id == model_id)
    if status is not None:
        stmt = stmt.where(Prediction.status == status)
    if since is not None:
        stmt = stmt.where(Prediction.created_at >= since)
    return stmt
