"""Security events. ``record`` joins the caller's transaction; ``record_now`` commits on its own,
for events on a failing path (the request's transaction is about to roll back)."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from inferx.db import unit_of_work
from inferx.tables import AuditEvent

log = structlog.get_logger("inferx.audit")


def _event(
    event: str,
    actor_id: uuid.UUID | None,
    target_id: uuid.UUID | None,
    ip: str | None,
    details: dict[str, Any],
) -> AuditEvent:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    log.info("audit." + event, actor_id=str(actor_id) if actor_id else None, ip=ip, **details)
    return AuditEvent(
        event=event,
        actor_id=actor_id,
        target_id=target_id,
        ip=ip,
        request_id=request_id,
        details=details,
    )


async def record(
    session: AsyncSession,
    event: str,
    *,
    actor_id: uuid.UUID | None = None,
    target_id: uuid.UUID | None = None,
    ip: str | None = None,
    **details: Any,
) -> None:
    session.add(_event(event, actor_id, target_id, ip, details))
    await session.flush()


async def record_now(
    sessions: async_sessionmaker[AsyncSession],
    event: str,
    *,
    actor_id: uuid.UUID | None = None,
    target_id: uuid.UUID | None = None,
    ip: str | None = None,
    **details: Any,
) -> None:
    try:
        async with unit_of_work(sessions) as session:
            session.add(_event(event, actor_id, target_id, ip, details))
    except Exception as exc:  # an audit write must never turn a 401 into a 500
        log.warning("audit.write_failed", audit_event=event, error=type(exc).__name__)
