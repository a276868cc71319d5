"""Batch jobs: the ``jobs`` row is the source of truth; ``job_chunks`` hold the work and the
results, one row per chunk, written at most once (UNIQUE(job_id, chunk_index))."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from inferx.kit.time import utcnow
from inferx.tables.base import Base, CreatedMixin, IdMixin


class Job(IdMixin, CreatedMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        Index("ix_jobs_status_claimed", "status", "last_claimed_at"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    api_key_id: Mapped[uuid.UUID | None]
    model_id: Mapped[uuid.UUID]
    model_version_id: Mapped[uuid.UUID]
    version: Mapped[int]
    # queued | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    source: Mapped[str] = mapped_column(String(8))  # json | csv
    total_rows: Mapped[int]
    done_rows: Mapped[int] = mapped_column(default=0)
    chunk_rows: Mapped[int]
    chunks_total: Mapped[int]
    chunks_done: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    last_claimed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JobChunk(IdMixin, Base):
    __tablename__ = "job_chunks"
    __table_args__ = (
        UniqueConstraint("job_id", "chunk_index", name="uq_job_chunks_job_chunk"),
        Index("ix_job_chunks_status_lease", "status", "lease_expires_at"),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    chunk_index: Mapped[int]
    first_row: Mapped[int]
    rows: Mapped[int]
    # pending | leased | done | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    inputs: Mapped[dict[str, Any] | None]
    results: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
