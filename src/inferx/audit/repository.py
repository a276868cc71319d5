from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.tables import AuditEvent


async def page(
    session: AsyncSession,
    *,
    event: str | None,
    actor_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> tuple[list[AuditEvent], int]:
    stmt = select(AuditEvent)
    if event:
        stmt = stmt.where(AuditEvent.event == event)
    if actor_id:
        stmt = stmt.where(AuditEvent.actor_id == actor_id)
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    rows = await session.execute(
        stmt.order_by(AuditEvent.created_at.desc(), AuditEvent.id).limit(limit).offset(offset)
    )
    return list(rows.scalars()), total
