"""Scaled out: Procrastinate on PostgreSQL with two real ``inferx worker`` processes; one is
SIGKILLed in the middle of a job. The job still succeeds and every row's result is there
exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import joblib
import numpy as np
import pytest
from jobs_testkit import FAST_JOBS, JOBS, upload
from sqlalchemy import func, select

from inferx.tables import Job, JobChunk

SCALED = {
    **FAST_JOBS,
    "jobs_dispatcher": "procrastinate",
    "jobs_worker_in_server": False,
    "jobs_chunk_rows": 100,
    "jobs_lease_s": 3.0,
    "jobs_heartbeat_s": 0.5,
}


def _worker(settings, log_path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERX_")}
    env.update(
        INFERX_ENV="test",
        INFERX_DATA_DIR=str(settings.data_dir),
        INFERX_DATABASE_URL=settings.database_url,
        INFERX_REDIS_PREFIX=settings.redis_prefix,
        INFERX_AUTO_MIGRATE="false",
        INFERX_INFERENCE_WORKERS="1",
        INFERX_JOBS_DISPATCHER="procrastinate",
        INFERX_JOBS_CONCURRENCY="1",
        INFERX_JOBS_LEASE_S="3",
        INFERX_JOBS_HEARTBEAT_S="0.5",
        INFERX_JOBS_POLL_S="0.2",
    )
    if settings.redis_url:
        env["INFERX_REDIS_URL"] = settings.redis_url
    return subprocess.Popen(
        [sys.executable, "-m", "inferx.cli", "worker"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def _state(api, job_id):
    async with api.ctx.sessions() as session:
        job = await session.get(Job, job_id, populate_existing=True)
        owners = (
            await session.execute(
                select(JobChunk.lease_owner).where(
                    JobChunk.job_id == job_id, JobChunk.status == "leased"
                )
            )
        ).scalars()
        return job, list(owners)


async def test_killed_worker_mid_job_the_job_still_succeeds_exactly_once(
    backend, make_api, make_settings, request, tmp_path
):
    if backend != "postgres":
        pytest.skip("Procrastinate needs PostgreSQL (set INFERX_TEST_DATABASE_URL)")
    model_files = request.getfixturevalue("model_files")
    settings = make_settings(**SCALED)
    api = await make_api(settings)
    workers = [_worker(settings, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        headers = await api.user("scale@example.com")
        model = await upload(api, headers, model_files["rf.joblib"], name="rf")
        X = np.random.default_rng(3).normal(size=(4_000, 20)).round(6)
        r = await api.client.post(
            JOBS, json={"model_id": model["id"], "inputs": X.tolist()}, headers=headers
        )
        assert r.status_code == 202, r.text
        job_id = uuid.UUID(r.json()["id"])
        victim = workers[0]
        tag = f":{victim.pid}:"
        deadline = time.monotonic() + 60
        killed_at = None
        while time.monotonic() < deadline:
            job, owners = await _state(api, job_id)
            assert job.status in ("queued", "running"), (job.status, job.error)
            if job.done_rows >= 300 and any(tag in (o or "") for o in owners):
                victim.send_signal(signal.SIGKILL)
                killed_at = job.done_rows
                break
            await asyncio.sleep(0.02)
        assert killed_at is not None and killed_at < 4_000, "never caught the worker mid-job"
        victim.wait(timeout=10)
        # What the dead worker still held (it may have finished its chunk between our look and
        # the signal: then nothing is orphaned, and the job must simply complete).
        async with api.ctx.sessions() as session:
            orphaned = list(
                (
                    await session.execute(
                        select(JobChunk.chunk_index).where(
                            JobChunk.job_id == job_id,
                            JobChunk.status == "leased",
                            JobChunk.lease_owner.contains(tag),
                        )
                    )
                ).scalars()
            )

        while time.monotonic() < deadline:
            job, _ = await _state(api, job_id)
            if job.status not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
        assert job.status == "succeeded", (job.status, job.error)
        assert job.done_rows == job.total_rows == 4_000 and job.chunks_done == 40

        async with api.ctx.sessions() as session:
            chunks = list(
                (
                    await session.execute(
                        select(JobChunk)
                        .where(JobChunk.job_id == job_id)
                        .order_by(JobChunk.chunk_index)
                    )
                ).scalars()
            )
            n = (
                await session.execute(
                    select(func.count()).select_from(JobChunk).where(JobChunk.job_id == job_id)
                )
            ).scalar_one()
        assert n == 40 and [c.chunk_index for c in chunks] == list(range(40))
        assert all(c.status == "done" for c in chunks)
        # A chunk the killed worker held was leased again and ran to completion elsewhere.
        assert all(chunks[i].attempts >= 2 for i in orphaned), orphaned

        r = await api.client.get(f"{JOBS}/{job_id}/results", headers=headers)
        results = r.json()["results"]
        assert [item["row"] for item in results] == list(range(4_000))
        expected = joblib.load(model_files["rf.joblib"]).predict(X)
        assert [item["prediction"] for item in results] == expected.tolist()
        assert workers[1].poll() is None  # the survivor is still serving
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
