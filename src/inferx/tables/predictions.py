from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inferx.tables.base import Base, CreatedMixin, IdMixin


class Prediction(IdMixin, CreatedMixin, Base):
    """One prediction request, success or failure. Written in batches, off the request path."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_user_created", "user_id", "created_at"),
        Index("ix_predictions_model_created", "model_id", "created_at"),
    )

    model_id: Mapped[uuid.UUID]
    model_version_id: Mapped[uuid.UUID | None]
    version: Mapped[int | None]
    user_id: Mapped[uuid.UUID]
    api_key_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int]
    latency_ms: Mapped[float]
    rows: Mapped[int]
    cache_hit: Mapped[bool]
    error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    inputs: Mapped[dict[str, Any] | None]
    outputs: Mapped[dict[str, Any] | None]


class PredictionRollup(Base):
    """Per model version and UTC day: counts and latency sums, so analytics never scan rows."""

    __tablename__ = "prediction_rollups"

    model_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    total: Mapped[int]
    errors: Mapped[int]
    latency_sum_ms: Mapped[float]
    latency_min_ms: Mapped[float]
    latency_max_ms: Mapped[float]


class LatencyBucket(Base):
    """Latency histogram per model version, day and bucket: percentiles without a row scan."""

    __tablename__ = "prediction_latency_buckets"

    model_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    bucket: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int]
