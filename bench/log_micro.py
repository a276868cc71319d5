"""Micro-benchmark of the prediction log: what one logged prediction costs the API process.

No HTTP: entries shaped exactly as ``inference.service._record`` builds them are recorded into a
``PredictionLog`` and flushed into a freshly migrated database (a temp SQLite file, and with
``--pg`` a throw-away PostgreSQL database created and dropped by the script).
Run: .venv/bin/python bench/log_micro.py [--rows 20000] [--repeat 3] [--payloads] [--uniform]
                                         [--pg postgresql+asyncpg://postgres@127.0.0.1:5432/test]

Prints, per backend, the process CPU time (``time.process_time``: every thread, so aiosqlite's
worker thread counts too), the part of it on the event loop's thread, and the wall time per row
of ``PredictionLog.flush()``; and the CPU per row of building the entry and of
``PredictionLog.record()``. Each repeat flushes new rows; the figures are medians over repeats.

By default entries alternate between an API key and none (a user's token) and 2% are errors;
``--uniform`` makes every entry a success with an API key (the ORM insert's best case: it
batches only consecutive rows whose None columns are the same).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import func, make_url, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from inferx.db import create_engine, create_sessionmaker, upgrade
from inferx.inference.log import PredictionLog
from inferx.kit.time import utcnow
from inferx.metrics import InferenceMetrics
from inferx.tables import Prediction

MAX_ERROR_CHARS = 2000  # as in inference.service


class Shapes:
    """A few models, users and keys; mostly successes, some errors and cache hits."""

    def __init__(self, payloads: bool, uniform: bool) -> None:
        self.models = [(uuid.uuid4(), uuid.uuid4(), 1 + i % 2) for i in range(4)]
        self.users = [uuid.uuid4() for _ in range(8)]
        self.keys = [uuid.uuid4(), uuid.uuid4() if uniform else None]
        self.request_ids = [uuid.uuid4().hex for _ in range(64)]  # set by the middleware
        self.keep = payloads
        self.uniform = uniform
        self.i = 0

    def entry(self) -> dict[str, Any]:
        """The dict of ``service._record``, field for field."""
        self.i += 1
        i = self.i
        model_id, model_version_id, version = self.models[i % len(self.models)]
        status_code = 200 if i % 50 or self.uniform else 422
        status = "success" if status_code < 400 else "error"
        error = None if status_code < 400 else "Input has 3 features; the model expects 4."
        start = time.perf_counter() - (i % 97) * 0.0003
        data = [[5.1, 3.5, 1.4, 0.2]]
        prediction, probabilities = [0], [[0.97, 0.02, 0.01]]
        keep = self.keep
        ok = status_code < 400
        return {
            "id": uuid.uuid4(),
            "created_at": utcnow(),
            "model_id": model_id,
            "model_version_id": model_version_id,
            "version": version,
            "user_id": self.users[i % len(self.users)],
            "api_key_id": self.keys[i % 2],
            "status": status,
            "status_code": status_code,
            "latency_ms": round((time.perf_counter() - start) * 1000, 3),
            "rows": 1,
            "cache_hit": bool(ok and i % 3 == 0),
            "error": error[:MAX_ERROR_CHARS] if error else None,
            "request_id": self.request_ids[i % 64],
            "inputs": {"input": data} if keep else None,
            "outputs": (
                {"prediction": prediction, "probabilities": probabilities} if keep and ok else None
            ),
        }


async def create_pg_database(url: str) -> tuple[str, Callable[[], Any]]:
    """A database of our own on the server (as tests/conftest.py does), dropped afterwards."""
    server = make_url("postgresql+asyncpg://" + url.split("://", 1)[1])
    name = f"inferx_bench_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        engine = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    await admin(f'CREATE DATABASE "{name}"')
    return (
        server.set(database=name).render_as_string(hide_password=False),
        lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'),
    )


async def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    engine = create_engine(url)
    await upgrade(engine)
    sessions = create_sessionmaker(engine)
    shapes = Shapes(args.payloads, args.uniform)
    build, record, flush_cpu, flush_loop, flush_wall = [], [], [], [], []
    try:
        for _ in range(args.repeat + 1):  # the first round warms caches and prepared statements
            metrics = InferenceMetrics(CollectorRegistry())
            plog = PredictionLog(sessions, metrics, max_buffer=args.rows, flush_s=3600)
            gc.collect()
            c0 = time.process_time()
            entries = [shapes.entry() for _ in range(args.rows)]
            c1 = time.process_time()
            for e in entries:
                plog.record(e)
            c2 = time.process_time()
            del entries
            gc.collect()
            w0, t0, c3 = time.perf_counter(), time.thread_time(), time.process_time()
            await plog.flush()
            c4, t1, w1 = time.process_time(), time.thread_time(), time.perf_counter()
            assert plog.pending == 0 and plog.dropped == 0
            build.append(c1 - c0)
            record.append(c2 - c1)
            flush_cpu.append(c4 - c3)
            flush_loop.append(t1 - t0)
            flush_wall.append(w1 - w0)
        async with sessions() as session:
            stored = (await session.execute(select(func.count()).select_from(Prediction))).scalar()
        assert stored == args.rows * (args.repeat + 1), stored
    finally:
        await engine.dispose()
    per_row = 1e6 / args.rows
    return {
        "flush_cpu": statistics.median(flush_cpu[1:]) * per_row,
        "flush_loop": statistics.median(flush_loop[1:]) * per_row,
        "flush_wall": statistics.median(flush_wall[1:]) * per_row,
        "build": statistics.median(build[1:]) * per_row,
        "record": statistics.median(record[1:]) * per_row,
    }


def report(backend: str, r: dict[str, float]) -> None:
    line = (
        f"{backend:<10} flush {r['flush_cpu']:6.2f} µs/row CPU (loop thread"
        f" {r['flush_loop']:6.2f}, wall {r['flush_wall']:6.2f})"
        f"   entry dict {r['build']:5.2f}   record() {r['record']:5.2f} µs/row CPU"
    )
    print(line)  # noqa: T201


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--payloads", action="store_true", help="log_prediction_payloads on")
    parser.add_argument("--uniform", action="store_true", help="every entry alike (see above)")
    parser.add_argument("--pg", metavar="URL", help="also PostgreSQL (a database is created)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'inferx.db'}"
        report("sqlite", await measure(url, args))
    if args.pg:
        pg_url, drop = await create_pg_database(args.pg)
        try:
            report("postgresql", await measure(pg_url, args))
        finally:
            await drop()


if __name__ == "__main__":
    asyncio.run(main())
