"""Background work of batch jobs: ``jobs.chunk`` (claim one chunk with a lease, predict it
through the same engine as ``/predict``, write its results once) and the maintenance pass
(expired leases, stale chunks, expired results).

At least once, effectively once: a chunk may be predicted twice (its worker died after the
prediction, before the write) but its results are written by the first writer only, and the
job's counters move only on that write.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.auth.dependencies import Principal
from inferx.context import AppContext
from inferx.db import after_commit, unit_of_work
from inferx.errors import InferxError
from inferx.inference.engine import Outcome
from inferx.inference.service import run_logged
from inferx.jobs import repository as repo
from inferx.jobs.dispatch import Item
from inferx.jobs.runtime import dispatch
from inferx.jobs.schemas import JobRead
from inferx.quotas.service import may_start_job
from inferx.tables import Job, JobChunk, User
from inferx.webhooks.service import enqueue_event

log = structlog.get_logger("inferx.jobs")

KIND = "jobs.chunk"
CANDIDATES = 16
TRANSIENT_STATUS = frozenset({429, 503, 504})
STALE_AFTER_S = 5.0
MAX_ERROR = 1000


@dataclass(slots=True)
class Claimed:
    chunk: JobChunk
    job: Job
    user: User


async def run_one(ctx: AppContext, worker: str) -> bool:
    """Claim the next due chunk and do it; False when there was nothing to do."""
    claimed = await _claim(ctx, worker)
    if claimed is None:
        return False
    chunk = claimed.chunk
    beat = asyncio.create_task(_heartbeat(ctx, chunk.id, worker))
    try:
        outcome = await _predict(ctx, claimed)
    except asyncio.CancelledError:
        # Shutting down mid-chunk: hand it back now rather than after the lease.
        with contextlib.suppress(Exception):
            await asyncio.shield(_release(ctx, chunk, worker, "worker stopped", refund=True))
        raise
    except Exception as exc:
        await _failed(ctx, claimed, worker, exc)
    else:
        await _store(ctx, claimed, outcome)
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    return True


async def _claim(ctx: AppContext, worker: str) -> Claimed | None:
    settings = ctx.settings
    async with unit_of_work(ctx.sessions) as session:
        now = await repo.db_now(session)
        running: dict[uuid.UUID, int] = {}
        users: dict[uuid.UUID, User | None] = {}
        for chunk_id, job_id, status, owner_id in await repo.claim_candidates(session, CANDIDATES):
            if owner_id not in users:
                users[owner_id] = await session.get(User, owner_id)
            user = users[owner_id]
            if status == "queued" and user is not None:
                # A queued job starts only while its owner is under the tier's running cap.
                if owner_id not in running:
                    running[owner_id] = await repo.running_count(session, owner_id)
                if not may_start_job(ctx, user, running[owner_id]):
                    continue
            chunk = await repo.lease(session, chunk_id, job_id, worker, now, settings.jobs_lease_s)
            if chunk is None:
                continue
            job = await session.get(Job, job_id)
            assert job is not None
            if user is None or not user.is_active:
                await _finish_failed(ctx, session, job, chunk, "The job's owner is disabled.")
                return None
            return Claimed(chunk=chunk, job=job, user=user)
    return None


async def _heartbeat(ctx: AppContext, chunk_id: uuid.UUID, worker: str) -> None:
    settings = ctx.settings
    while True:
        await asyncio.sleep(settings.jobs_heartbeat_s)
        try:
            async with unit_of_work(ctx.sessions) as session:
                if not await repo.extend(session, chunk_id, worker, settings.jobs_lease_s):
                    return  # lost (reaped, cancelled or done elsewhere): the write decides
        except Exception as exc:
            log.warning("jobs.heartbeat_failed", error=type(exc).__name__)


async def _predict(ctx: AppContext, claimed: Claimed) -> Outcome:
    job, chunk = claimed.job, claimed.chunk
    async with unit_of_work(ctx.sessions) as session:
        target = await ctx.targets.resolve(session, claimed.user, job.model_id, job.version)
    principal = Principal(
        user=claimed.user,
        via="api_key" if job.api_key_id else "jwt",
        api_key_id=job.api_key_id,
    )
    rows = (chunk.inputs or {}).get("rows") or []
    # One prediction log entry per chunk, tagged with the job and the chunk.
    request_id = f"job:{job.id}#{chunk.chunk_index}"
    return await run_logged(ctx, principal, target, rows, request_id, time.perf_counter())


async def _store(ctx: AppContext, claimed: Claimed, outcome: Outcome) -> None:
    results = chunk_results(outcome)
    async with unit_of_work(ctx.sessions) as session:
        job = await repo.store_result(session, claimed.chunk, results)
        if job is None:
            log.info("jobs.chunk_already_written", job_id=str(claimed.job.id))
            return
        if job.chunks_done >= job.chunks_total and job.status == "running":
            now = await repo.db_now(session)
            retention = ctx.settings.jobs_retention_hours * 3600
            if await repo.finish(session, job.id, "succeeded", now, retention):
                await session.refresh(job)
                await _announce(ctx, session, job, "job.succeeded")
                log.info("jobs.succeeded", job_id=str(job.id), rows=job.total_rows)


async def _failed(ctx: AppContext, claimed: Claimed, worker: str, exc: Exception) -> None:
    chunk = claimed.chunk
    detail = exc.detail if isinstance(exc, InferxError) else type(exc).__name__
    where = f"rows {chunk.first_row}-{chunk.first_row + chunk.rows - 1}: {detail}"[:MAX_ERROR]
    transient = not isinstance(exc, InferxError) or exc.status in TRANSIENT_STATUS
    if not isinstance(exc, InferxError):
        log.error("jobs.chunk_error", job_id=str(chunk.job_id), error=type(exc).__name__)
    if transient and chunk.attempts < ctx.settings.jobs_max_attempts:
        await _release(ctx, chunk, worker, where, refund=False)
        await dispatch(ctx, KIND, [(chunk.id, None)])
        return
    if transient:
        where = f"{where} (gave up after {chunk.attempts} attempts)"
    async with unit_of_work(ctx.sessions) as session:
        job = await session.get(Job, chunk.job_id)
        if job is not None:
            await _finish_failed(ctx, session, job, chunk, where)


async def _release(
    ctx: AppContext, chunk: JobChunk, worker: str, error: str, *, refund: bool
) -> None:
    async with unit_of_work(ctx.sessions) as session:
        await repo.release(session, chunk.id, worker, error, refund=refund)


async def _finish_failed(
    ctx: AppContext, session: AsyncSession, job: Job, chunk: JobChunk | None, error: str
) -> None:
    now = await repo.db_now(session)
    retention = ctx.settings.jobs_retention_hours * 3600
    if chunk is not None:
        await repo.mark_chunk_failed(session, chunk.id, error)
    if await repo.finish(session, job.id, "failed", now, retention, error=error):
        await session.refresh(job)
        await _announce(ctx, session, job, "job.failed")
        log.info("jobs.failed", job_id=str(job.id), error=error)


async def _announce(ctx: AppContext, session: AsyncSession, job: Job, event: str) -> None:
    """The webhook messages are rows of the same transaction as the job's final state."""
    data = JobRead.of(job).model_dump(mode="json")
    items = await enqueue_event(session, job.owner_id, event, data, dedupe=f"{event}:{job.id}")
    if items:
        after_commit(session, lambda: dispatch(ctx, "webhooks.deliver", items))


# --- maintenance ----------------------------------------------------------------------------


async def maintain(ctx: AppContext) -> list[Item]:
    """Expired leases back to pending (or the job failed after max attempts), chunks nobody
    picked up dispatched again, expired results purged. Safe to run in every process."""
    settings = ctx.settings
    again: list[Item] = []
    async with unit_of_work(ctx.sessions) as session:
        now = await repo.db_now(session)
        for chunk in await repo.expired_leases(session, now):
            if chunk.attempts >= settings.jobs_max_attempts:
                job = await session.get(Job, chunk.job_id)
                if job is not None:
                    reason = (
                        f"rows {chunk.first_row}-{chunk.first_row + chunk.rows - 1}: the worker "
                        f"was lost {chunk.attempts} times (lease expired)"
                    )
                    await _finish_failed(ctx, session, job, chunk, reason)
            elif await repo.requeue_expired(session, chunk.id, now):
                log.warning("jobs.lease_expired", job_id=str(chunk.job_id), chunk=chunk.chunk_index)
                again.append((chunk.id, None))
    async with unit_of_work(ctx.sessions) as session:
        now = await repo.db_now(session)
        stale = await repo.stale_pending(session, now - timedelta(seconds=_stale_s(ctx)), 100)
        await repo.touch_chunks(session, stale)
        again.extend((chunk_id, None) for chunk_id in stale)
        await repo.purge_expired(session, now)
    return again


def _stale_s(ctx: AppContext) -> float:
    return max(STALE_AFTER_S, ctx.settings.jobs_poll_s * 5)


def chunk_results(outcome: Outcome) -> dict[str, Any]:
    return {
        "prediction": outcome.prediction,
        "probabilities": outcome.probabilities,
        "classes": outcome.classes,
    }
