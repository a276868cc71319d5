from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime) -> datetime:
    """SQLite hands datetimes back naive; everything in InferX is UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
