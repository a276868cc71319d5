from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field


class WindowUsage(BaseModel):
    """One moving window. ``limit``/``used``/``remaining`` are null when there is no cap."""

    limit: int | None
    used: int | None
    remaining: int | None
    window_s: int
    resets_at: datetime | None = Field(
        description="When the oldest request counted in the window leaves it (a slot frees up)."
    )
    source: Literal["tier", "override"]


class KeyUsage(BaseModel):
    id: uuid.UUID
    name: str | None = Field(description="null for a key deleted since")
    prefix: str | None
    predictions_today: int


class JobCaps(BaseModel):
    max_running: int
    max_queued: int


class UsageRead(BaseModel):
    tier: str
    day: date = Field(description="The UTC day of the *_today counts.")
    predictions_today: int = Field(description="Prediction requests accepted today (UTC).")
    daily: WindowUsage = Field(description="Predictions in the last 24 hours (moving window).")
    per_minute: WindowUsage = Field(description="Predictions in the last minute (burst).")
    api_keys: list[KeyUsage]
    sessions_predictions_today: int = Field(
        description="Predictions made today with an access token rather than an API key."
    )
    batch_rows: WindowUsage = Field(description="Batch rows in the last 24 hours.")
    jobs: JobCaps
    degraded: bool = Field(
        description="Redis is unreachable: this replica counts alone, numbers are approximate."
    )
