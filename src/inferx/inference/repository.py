"""SQL of the prediction log: bulk inserts, rollup upserts, history reads."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from inferx.analytics.histogram import bucket_of
from inferx.tables import Model, Prediction

# The prediction log is the hottest write path (a row per request): rows go to the driver's
# executemany as tuples already in the form the ORM's type processors produced before (UUIDs as
# hex and datetimes as text on SQLite, JSON as text on both, a None payload as JSON 'null'), so
# what is stored and read back is unchanged, without the ORM's tens of µs of CPU per row (more
# when None values split its batches). A new column of Prediction must be added here.
COLUMNS = (
    "id", "created_at", "model_id", "model_version_id", "version", "user_id", "api_key_id",
    "status", "status_code", "latency_ms", "rows", "cache_hit", "error", "request_id",
    "inputs", "outputs",
)  # fmt: skip
_SCALARS = itemgetter(*COLUMNS[7:14])
_ROLLUP_COLUMNS = (
    "model_id", "version", "day", "total", "errors",
    "latency_sum_ms", "latency_min_ms", "latency_max_ms",
)  # fmt: skip
_BUCKET_COLUMNS = ("model_id", "version", "day", "bucket", "count")


def _insert(table: str, columns: tuple[str, ...], marks: list[str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({", ".join(marks)})'


def _statements(marks: list[str], least: str, greatest: str) -> tuple[str, str, str]:
    rollups = "prediction_rollups"
    return (
        _insert("predictions", COLUMNS, marks[: len(COLUMNS)]),
        _insert(rollups, _ROLLUP_COLUMNS, marks[: len(_ROLLUP_COLUMNS)])
        + ' ON CONFLICT ("model_id", "version", "day") DO UPDATE SET'
        f' "total" = {rollups}."total" + excluded."total",'
        f' "errors" = {rollups}."errors" + excluded."errors",'
        f' "latency_sum_ms" = {rollups}."latency_sum_ms" + excluded."latency_sum_ms",'
        f' "latency_min_ms" = {least}({rollups}."latency_min_ms", excluded."latency_min_ms"),'
        f' "latency_max_ms" = {greatest}({rollups}."latency_max_ms", excluded."latency_max_ms")',
        _insert("prediction_latency_buckets", _BUCKET_COLUMNS, marks[: len(_BUCKET_COLUMNS)])
        + ' ON CONFLICT ("model_id", "version", "day", "bucket") DO UPDATE SET'
        ' "count" = prediction_latency_buckets."count" + excluded."count"',
    )


_PG = _statements([f"${i}" for i in range(1, 17)], "LEAST", "GREATEST")
_SQLITE = _statements(["?"] * 16, "min", "max")

_Rollups = dict[tuple[uuid.UUID, int, date], list[Any]]
_Buckets = dict[tuple[uuid.UUID, int, date, int], int]


async def write_log(session: AsyncSession, entries: list[dict[str, Any]]) -> None:
    """Insert prediction log entries (dicts of every column) and add them to the rollups."""
    if not entries:
        return
    conn = await session.connection()
    dumps: Callable[[Any], str] = getattr(conn.dialect, "_json_serializer", None) or json.dumps
    if conn.dialect.name == "postgresql":
        insert, upsert_rollups, upsert_buckets = _PG
        rows = _pg_rows(entries, dumps)
        key: Callable[[Any], Any] = _same
    else:
        insert, upsert_rollups, upsert_buckets = _SQLITE
        rows = _sqlite_rows(entries, dumps)
        key = _hex
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(insert, rows)
    else:
        await _insert_sqlite(conn, insert, rows)
    rollups, buckets = _rollups(entries)
    if rollups:
        # Sorted, so that two replicas flushing at once lock the same rows in the same order.
        await conn.exec_driver_sql(
            upsert_rollups,
            [(key(m), v, d.isoformat(), *r) for (m, v, d), r in sorted(rollups.items())],
        )
        await conn.exec_driver_sql(
            upsert_buckets,
            [(key(m), v, d.isoformat(), b, n) for (m, v, d, b), n in sorted(buckets.items())],
        )


# Rows per multi-row INSERT on SQLite: within its 32,766 bound variables.
SQLITE_ROWS_PER_INSERT = 32_766 // len(COLUMNS)


async def _insert_sqlite(conn: AsyncConnection, insert: str, rows: list[tuple[Any, ...]]) -> None:
    """Multi-row INSERTs rather than executemany: the sqlite3 module releases and takes back the
    GIL around every statement step, so a row per step made the log's thread take the GIL from
    the event loop thousands of times a second; one step per statement makes it a few."""
    head, _, marks = insert.partition(" VALUES ")
    for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
        chunk = rows[start : start + SQLITE_ROWS_PER_INSERT]
        sql = f"{head} VALUES {', '.join([marks] * len(chunk))}"
        await conn.exec_driver_sql(sql, tuple(chain.from_iterable(chunk)))


def _pg_rows(entries: list[dict[str, Any]], dumps: Callable[[Any], str]) -> list[tuple[Any, ...]]:
    # asyncpg takes UUIDs and aware datetimes as they are; JSON goes as text (SQLAlchemy's codec).
    return [
        (
            e["id"],
            _aware(e["created_at"]),
            e["model_id"],
            e["model_version_id"],
            e["version"],
            e["user_id"],
            e["api_key_id"],
            *_SCALARS(e),
            "null" if (i := e["inputs"]) is None else dumps(i),
            "null" if (o := e["outputs"]) is None else dumps(o),
        )
        for e in entries
    ]


def _sqlite_rows(
    entries: list[dict[str, Any]], dumps: Callable[[Any], str]
) -> list[tuple[Any, ...]]:
    # As SQLAlchemy stores them on SQLite: UUIDs as 32 hex digits, datetimes as the wall-clock
    # 'YYYY-MM-DD HH:MM:SS.ffffff' (its offset dropped), booleans as 0/1.
    return [
        (
            e["id"].hex,
            e["created_at"].isoformat(" ", "microseconds")[:26],
            e["model_id"].hex,
            None if (mv := e["model_version_id"]) is None else mv.hex,
            e["version"],
            e["user_id"].hex,
            None if (k := e["api_key_id"]) is None else k.hex,
            *_SCALARS(e),
            "null" if (i := e["inputs"]) is None else dumps(i),
            "null" if (o := e["outputs"]) is None else dumps(o),
        )
        for e in entries
    ]


def _aware(dt: datetime) -> datetime:
    # asyncpg reads a naive datetime as local time; InferX's naive datetimes are UTC.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _rollups(entries: list[dict[str, Any]]) -> tuple[_Rollups, _Buckets]:
    rollups: _Rollups = {}
    buckets: _Buckets = defaultdict(int)
    for e in entries:
        version = e["version"]
        if version is None:
            continue
        key = (e["model_id"], version, e["created_at"].date())
        ms = float(e["latency_ms"])
        error = e["status"] != "success"
        r = rollups.get(key)
        if r is None:
            rollups[key] = [1, int(error), ms, ms, ms]
        else:
            r[0] += 1
            r[1] += error
            r[2] += ms
            if ms < r[3]:
                r[3] = ms
            elif ms > r[4]:
                r[4] = ms
        buckets[(*key, bucket_of(ms))] += 1
    return rollups, buckets


def _same(value: Any) -> Any:
    return value


def _hex(value: uuid.UUID) -> str:
    return value.hex


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
