"""Every SQL statement of batch jobs: the ledger. Tenant scoping lives in ``owned``.

Leases and the reaper compare times taken from the database (``db_now``), not from the host
clock of whichever worker runs the statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.kit.time import aware, utcnow
from inferx.tables import Job, JobChunk

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")


def is_postgres(session: AsyncSession) -> bool:
    bind = session.bind
    return bind is not None and bind.dialect.name == "postgresql"


async def db_now(session: AsyncSession) -> datetime:
    """The database's clock on PostgreSQL (shared by every worker); the host's on SQLite,
    where every worker runs on the host that holds the file."""
    if is_postgres(session):
        return aware((await session.execute(select(func.statement_timestamp()))).scalar_one())
    return utcnow()


def owned(owner_id: uuid.UUID) -> Select[Job]:
    return select(Job).where(Job.owner_id == owner_id)


async def get_owned(session: AsyncSession, owner_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
    stmt = owned(owner_id).where(Job.id == job_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_owned(
    session: AsyncSession, owner_id: uuid.UUID, status: str | None, limit: int, offset: int
) -> tuple[list[Job], int]:
    stmt = owned(owner_id)
    if status:
        stmt = stmt.where(Job.status == status)
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    rows = await session.execute(
        stmt.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    )
    return list(rows.scalars()), int(total)


async def counts(session: AsyncSession, owner_id: uuid.UUID) -> dict[str, int]:
    rows = await session.execute(
        select(Job.status, func.count())
        .where(Job.owner_id == owner_id, Job.status.in_(ACTIVE))
        .group_by(Job.status)
    )
    found = {status: int(n) for status, n in rows.all()}
    return {s: found.get(s, 0) for s in ACTIVE}


async def add_chunks(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(JobChunk), rows)


# --- claiming and leases --------------------------------------------------------------------


async def claim_candidates(session: AsyncSession, limit: int) -> list[Any]:
    """Pending chunks of live jobs, least recently served job first (round robin across jobs
    and tenants: a new job is served at the next claim, whoever else has work queued)."""
    stmt = (
        select(JobChunk.id, JobChunk.job_id, Job.status, Job.owner_id)
        .join(Job, Job.id == JobChunk.job_id)
        .where(JobChunk.status == "pending", Job.status.in_(ACTIVE))
        .order_by(Job.last_claimed_at.asc().nulls_first(), Job.created_at, JobChunk.chunk_index)
        .limit(limit)
    )
    # No row locks here: ``lease`` is a conditional UPDATE, so of two claimers of one chunk
    # exactly one wins and the other moves on to its next candidate.
    return list((await session.execute(stmt)).all())


async def running_count(session: AsyncSession, owner_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(Job.owner_id == owner_id, Job.status == "running")
    return int((await session.execute(stmt)).scalar_one())


async def lease(
    session: AsyncSession,
    chunk_id: uuid.UUID,
    job_id: uuid.UUID,
    owner: str,
    now: datetime,
    lease_s: float,
) -> JobChunk | None:
    """Take a pending chunk (conditional: two claimers never both win) and start its job."""
    result = await session.execute(
        update(JobChunk)
        .where(JobChunk.id == chunk_id, JobChunk.status == "pending")
        .values(
            status="leased",
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
            attempts=JobChunk.attempts + 1,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="running", started_at=now)
    )
    await session.execute(update(Job).where(Job.id == job_id).values(last_claimed_at=now))
    return (await session.execute(select(JobChunk).where(JobChunk.id == chunk_id))).scalar_one()


async def extend(session: AsyncSession, chunk_id: uuid.UUID, owner: str, lease_s: float) -> bool:
    now = await db_now(session)
    result = await session.execute(
        update(JobChunk)
        .where(JobChunk.id == chunk_id, JobChunk.status == "leased", JobChunk.lease_owner == owner)
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def release(
    session: AsyncSession, chunk_id: uuid.UUID, owner: str, error: str, *, refund: bool = False
) -> bool:
    """Give a chunk back: after a transient failure (the attempt stays counted) or at
    shutdown (``refund``: a deploy is not the chunk's fault)."""
    values: dict[str, Any] = {
        "status": "pending",
        "lease_owner": None,
        "lease_expires_at": None,
        "error": error,
    }
    if refund:
        values["attempts"] = JobChunk.attempts - 1
    result = await session.execute(
        update(JobChunk)
        .where(JobChunk.id == chunk_id, JobChunk.status == "leased", JobChunk.lease_owner == owner)
        .values(**values)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def expired_leases(session: AsyncSession, now: datetime, limit: int = 100) -> list[JobChunk]:
    stmt = (
        select(JobChunk)
        .where(JobChunk.status == "leased", JobChunk.lease_expires_at < now)
        .order_by(JobChunk.lease_expires_at)
        .limit(limit)
    )
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.execute(stmt)).scalars())


async def requeue_expired(session: AsyncSession, chunk_id: uuid.UUID, now: datetime) -> bool:
    result = await session.execute(
        update(JobChunk)
        .where(
            JobChunk.id == chunk_id,
            JobChunk.status == "leased",
            JobChunk.lease_expires_at < now,
        )
        .values(status="pending", lease_owner=None, lease_expires_at=None, error="lease expired")
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def stale_pending(session: AsyncSession, before: datetime, limit: int) -> list[uuid.UUID]:
    """Pending chunks nobody has touched for a while: dispatch them again (at-least-once)."""
    stmt = (
        select(JobChunk.id)
        .join(Job, Job.id == JobChunk.job_id)
        .where(JobChunk.status == "pending", Job.status.in_(ACTIVE), JobChunk.updated_at < before)
        .order_by(JobChunk.updated_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def touch_chunks(session: AsyncSession, chunk_ids: Sequence[uuid.UUID]) -> None:
    if chunk_ids:
        await session.execute(
            update(JobChunk).where(JobChunk.id.in_(chunk_ids)).values(updated_at=utcnow())
        )


# --- results and terminal states ------------------------------------------------------------


async def store_result(
    session: AsyncSession, chunk: JobChunk, results: dict[str, Any]
) -> Job | None:
    """Write a chunk's results once: the first writer wins, a repeat changes nothing.
    Returns the job (with fresh counters) when this call wrote them."""
    result = await session.execute(
        update(JobChunk)
        .where(JobChunk.id == chunk.id, JobChunk.status.in_(("pending", "leased")))
        .values(
            status="done",
            results=results,
            inputs=None,
            lease_owner=None,
            lease_expires_at=None,
            error=None,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await session.execute(
        update(Job)
        .where(Job.id == chunk.job_id)
        .values(done_rows=Job.done_rows + chunk.rows, chunks_done=Job.chunks_done + 1)
    )
    return (
        await session.execute(select(Job).where(Job.id == chunk.job_id).with_for_update())
    ).scalar_one()


async def finish(
    session: AsyncSession,
    job_id: uuid.UUID,
    status: str,
    now: datetime,
    retention_s: float,
    error: str | None = None,
) -> bool:
    """Move a live job to a terminal state (once); its unfinished chunks are dropped."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(
            status=status,
            error=error,
            finished_at=now,
            expires_at=now + timedelta(seconds=retention_s),
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if status != "succeeded":
        await session.execute(
            update(JobChunk)
            .where(JobChunk.job_id == job_id, JobChunk.status.in_(("pending", "leased")))
            .values(status="cancelled", inputs=None, lease_owner=None, lease_expires_at=None)
        )
    return True


async def mark_chunk_failed(session: AsyncSession, chunk_id: uuid.UUID, error: str) -> None:
    await session.execute(
        update(JobChunk)
        .where(JobChunk.id == chunk_id)
        .values(status="failed", error=error, inputs=None, lease_owner=None)
    )


async def result_chunks(
    session: AsyncSession, job_id: uuid.UUID, from_index: int, limit: int
) -> list[Any]:
    stmt = (
        select(JobChunk.chunk_index, JobChunk.first_row, JobChunk.results)
        .where(JobChunk.job_id == job_id, JobChunk.chunk_index >= from_index)
        .order_by(JobChunk.chunk_index)
        .limit(limit)
    )
    return list((await session.execute(stmt)).all())


async def purge_expired(session: AsyncSession, now: datetime, limit: int = 50) -> int:
    """Results past their retention: drop the chunks, keep the job row (status, counts)."""
    ids = list(
        (
            await session.execute(
                select(Job.id).where(Job.expires_at < now, Job.chunks_total > 0).limit(limit)
            )
        ).scalars()
    )
    if not ids:
        return 0
    await session.execute(delete(JobChunk).where(JobChunk.job_id.in_(ids)))
    await session.execute(update(Job).where(Job.id.in_(ids)).values(chunks_total=0))
    return len(ids)
