"""The prediction log: what is recorded is what the ORM reads back, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sklearn.datasets import load_iris
from sqlalchemy import insert, select, text

from inferx.db import create_engine, create_sessionmaker
from inferx.inference.log import PredictionLog
from inferx.inference.repository import COLUMNS
from inferx.tables import LatencyBucket, Prediction, PredictionRollup

IRIS = load_iris().data.tolist()


def _stored(row: Prediction) -> dict[str, Any]:
    return {c: getattr(row, c) for c in COLUMNS}


async def _read_back(api: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    async with api.ctx.sessions() as session:
        rows = (await session.execute(select(Prediction).where(Prediction.id.in_(ids)))).scalars()
        return {row.id: _stored(row) for row in rows}


def _entry(**overrides: Any) -> dict[str, Any]:
    """Shaped as inference.service._record builds it."""
    entry = {
        "id": uuid.uuid4(),
        "created_at": datetime.now(UTC),
        "model_id": uuid.uuid4(),
        "model_version_id": uuid.uuid4(),
        "version": 1,
        "user_id": uuid.uuid4(),
        "api_key_id": None,
        "status": "success",
        "status_code": 200,
        "latency_ms": 1.234,
        "rows": 1,
        "cache_hit": False,
        "error": None,
        "request_id": uuid.uuid4().hex,
        "inputs": None,
        "outputs": None,
    }
    entry.update(overrides)
    return entry


def test_every_column_of_the_table_is_written() -> None:
    assert sorted(COLUMNS) == sorted(c.name for c in Prediction.__table__.columns)


@pytest.mark.parametrize("payloads", [False, True], ids=["no-payloads", "payloads"])
async def test_a_flushed_entry_reads_back_as_recorded(
    make_settings, make_api, model_files, payloads
):
    api = await make_api(make_settings(log_prediction_payloads=payloads))
    recorded: list[dict[str, Any]] = []
    record = api.ctx.prediction_log.record

    def spy(entry: dict[str, Any]) -> None:
        recorded.append(entry)
        record(entry)

    api.ctx.prediction_log.record = spy
    headers = await api.user("ds@example.com")
    key = {"X-API-Key": (await api.api_key(headers))["key"]}
    model = await api.upload(headers, model_files["iris.pkl"])
    url = f"/api/v1/predict/{model['id']}"
    for body, auth, status in (
        ({"input": [IRIS[0], IRIS[100]]}, key, 200),  # an API key
        ({"input": [IRIS[0], IRIS[100]]}, headers, 200),  # a cache hit, as a user (no key)
        ({"input": [[1.0, 2.0]]}, key, 422),  # an error
    ):
        assert (await api.client.post(url, json=body, headers=auth)).status_code == status
    await api.ctx.prediction_log.flush()

    assert [e["status_code"] for e in recorded] == [200, 200, 422]
    assert {e["api_key_id"] is None for e in recorded} == {True, False}
    assert [e["cache_hit"] for e in recorded] == [False, True, False]
    assert recorded[2]["error"] and recorded[2]["status"] == "error"
    if payloads:
        assert all(e["inputs"] is not None for e in recorded)
        assert [e["outputs"] is not None for e in recorded] == [True, True, False]
    else:
        assert all(e["inputs"] is None and e["outputs"] is None for e in recorded)
    stored = await _read_back(api, [e["id"] for e in recorded])
    assert [stored[e["id"]] for e in recorded] == recorded


async def test_rows_are_stored_exactly_as_the_orm_stored_them(api):
    """The driver-level insert against the ORM's own insert: the same column values in the
    database, JSON 'null' (not SQL NULL) for a missing payload included."""
    payload = {"input": [[5.1, 3.5, 1.4, 0.2], [1e-07, -2.5e10, 3, None]], "text": 'é ✓ "q"'}
    entries = [
        _entry(),
        _entry(created_at=datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC), api_key_id=uuid.uuid4()),
        _entry(created_at=datetime(2026, 3, 1, 23, 59, 59, 999999)),  # naive: taken as UTC
        _entry(inputs=payload, outputs={"prediction": [0, 1], "probabilities": [[0.25, 0.75]]}),
        _entry(
            status="error",
            status_code=500,
            error="ValueError: ü" * 50,
            model_version_id=None,
            version=None,
            cache_hit=True,
            rows=0,
            latency_ms=0.0,
            request_id=None,
        ),
    ]
    via_orm = [{**e, "id": uuid.uuid4()} for e in entries]
    async with api.ctx.sessions() as session, session.begin():
        await session.execute(insert(Prediction), via_orm)
    plog = PredictionLog(api.ctx.sessions, api.ctx.metrics.inference, max_buffer=100, flush_s=60)
    for e in entries:
        plog.record(e)
    await plog.flush()

    columns = ", ".join(f'"{c}"' for c in COLUMNS[1:])
    sql = f'SELECT {columns}, inputs IS NULL, outputs IS NULL FROM predictions WHERE "id" = '
    pg = api.ctx.engine.dialect.name == "postgresql"
    sql += "$1" if pg else "?"
    async with api.ctx.engine.connect() as conn:
        for ours, theirs in zip(entries, via_orm, strict=True):
            got, expected = [
                tuple((await conn.exec_driver_sql(sql, (i if pg else i.hex,))).one())
                for i in (ours["id"], theirs["id"])
            ]
            assert got == expected
    stored = await _read_back(api, [e["id"] for e in entries])
    entries[2]["created_at"] = entries[2]["created_at"].replace(tzinfo=UTC)
    assert [stored[e["id"]] for e in entries] == entries


async def test_rollups_add_up_across_flushes(api):
    model_id, day = uuid.uuid4(), datetime(2026, 3, 1, 10, tzinfo=UTC)
    plog = PredictionLog(api.ctx.sessions, api.ctx.metrics.inference, max_buffer=100, flush_s=60)
    for ms in (5.0, 1.0, 250.0):
        plog.record(_entry(model_id=model_id, created_at=day, latency_ms=ms))
    plog.record(_entry(model_id=model_id, created_at=day, version=None))  # not rolled up
    await plog.flush()
    plog.record(_entry(model_id=model_id, created_at=day, latency_ms=0.2, status="error"))
    plog.record(_entry(model_id=model_id, created_at=day, latency_ms=300.0))
    plog.record(_entry(model_id=model_id, created_at=day + timedelta(days=1), latency_ms=7.0))
    await plog.flush()

    async with api.ctx.sessions() as session:
        rollups = (
            await session.execute(
                select(PredictionRollup)
                .where(PredictionRollup.model_id == model_id)
                .order_by(PredictionRollup.day)
            )
        ).scalars()
        got = [
            (r.version, r.day, r.total, r.errors, r.latency_sum_ms, r.latency_min_ms, r.latency_max_ms)
            for r in rollups
        ]  # fmt: skip
        buckets = (
            await session.execute(
                select(LatencyBucket.day, LatencyBucket.bucket, LatencyBucket.count).where(
                    LatencyBucket.model_id == model_id
                )
            )
        ).all()
    assert got == [
        (1, "2026-03-01", 5, 1, pytest.approx(556.2), 0.2, 300.0),
        (1, "2026-03-02", 1, 0, 7.0, 7.0, 7.0),
    ]
    assert sorted(tuple(b) for b in buckets) == [
        ("2026-03-01", 1, 1),  # 0.2 ms
        ("2026-03-01", 3, 1),  # 1.0
        ("2026-03-01", 6, 1),  # 5.0
        ("2026-03-01", 14, 1),  # 250.0
        ("2026-03-01", 15, 1),  # 300.0
        ("2026-03-02", 7, 1),  # 7.0
    ]


async def test_a_failed_flush_keeps_what_fits_and_counts_the_rest(api, tmp_path):
    dead = create_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/x.db")
    plog = PredictionLog(
        create_sessionmaker(dead), api.ctx.metrics.inference, max_buffer=100, flush_s=60
    )
    try:
        for _ in range(150):
            plog.record(_entry())
        assert (plog.pending, plog.dropped) == (100, 50)
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            await plog.flush()
        assert (plog.pending, plog.dropped) == (100, 50)
    finally:
        await dead.dispose()
    plog._sessions = api.ctx.sessions
    await plog.flush()
    assert plog.pending == 0
    async with api.ctx.sessions() as session:
        count = (await session.execute(text("SELECT count(*) FROM predictions"))).scalar()
    assert count == 100
