"""Every SQL statement of webhooks. Tenant scoping lives in ``owned``."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.jobs.repository import is_postgres
from inferx.tables import Webhook, WebhookAttempt, WebhookDelivery


def owned(owner_id: uuid.UUID) -> Select[Webhook]:
    return select(Webhook).where(Webhook.owner_id == owner_id)


async def get_owned(
    session: AsyncSession, owner_id: uuid.UUID, webhook_id: uuid.UUID
) -> Webhook | None:
    stmt = owned(owner_id).where(Webhook.id == webhook_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_owned(
    session: AsyncSession, owner_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[Webhook], int]:
    stmt = owned(owner_id)
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    rows = await session.execute(
        stmt.order_by(Webhook.created_at.desc(), Webhook.id).limit(limit).offset(offset)
    )
    return list(rows.scalars()), int(total)


async def count_owned(session: AsyncSession, owner_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(Webhook.owner_id == owner_id)
    return int((await session.execute(stmt)).scalar_one())


async def active_for(session: AsyncSession, owner_id: uuid.UUID) -> list[Webhook]:
    stmt = select(Webhook).where(Webhook.owner_id == owner_id, Webhook.is_active.is_(True))
    return list((await session.execute(stmt)).scalars())


async def add_delivery(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert one message unless this endpoint already has it (same ``msg_id``)."""
    dialect = postgresql if is_postgres(session) else sqlite
    stmt = (
        dialect.insert(WebhookDelivery)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["webhook_id", "msg_id"])
        .returning(WebhookDelivery.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def deliveries(
    session: AsyncSession, webhook_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[WebhookDelivery], int, dict[uuid.UUID, list[WebhookAttempt]]]:
    base = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    total = (await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
    rows = list(
        (
            await session.execute(
                base.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
                .limit(limit)
                .offset(offset)
            )
        ).scalars()
    )
    attempts: dict[uuid.UUID, list[WebhookAttempt]] = {d.id: [] for d in rows}
    if rows:
        found = await session.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.attempt)
        )
        for a in found.scalars():
            attempts[a.delivery_id].append(a)
    return rows, int(total), attempts


async def claim_due(
    session: AsyncSession, now: datetime, owner: str, lease_s: float
) -> WebhookDelivery | None:
    """The next due message, leased to ``owner`` (a crashed sender's lease simply expires)."""
    stmt = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            (WebhookDelivery.lease_expires_at.is_(None)) | (WebhookDelivery.lease_expires_at < now),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(4)
    )
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    for delivery_id in list((await session.execute(stmt)).scalars()):
        result = await session.execute(
            update(WebhookDelivery)
            .where(
                # Re-checked here: another sender may have settled it since the SELECT.
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                (WebhookDelivery.lease_expires_at.is_(None))
                | (WebhookDelivery.lease_expires_at < now),
            )
            .values(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_s),
                attempts=WebhookDelivery.attempts + 1,
            )
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return await session.get(WebhookDelivery, delivery_id, populate_existing=True)
    return None


async def add_attempt(session: AsyncSession, **values: Any) -> None:
    session.add(WebhookAttempt(**values))


async def settle(session: AsyncSession, delivery_id: uuid.UUID, owner: str, **values: Any) -> bool:
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None, **values)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def disable(session: AsyncSession, webhook_id: uuid.UUID, reason: str) -> None:
    await session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id)
        .values(is_active=False, disabled_reason=reason[:200])
    )


async def overdue(session: AsyncSession, before: datetime, limit: int) -> list[Any]:
    stmt = (
        select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= before,
            (WebhookDelivery.lease_expires_at.is_(None))
            | (WebhookDelivery.lease_expires_at < before),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).all())


async def purge_finished(session: AsyncSession, before: datetime, limit: int = 500) -> None:
    """Settled messages (and their attempts) older than the retention."""
    ids = select(WebhookDelivery.id).where(
        WebhookDelivery.status != "pending", WebhookDelivery.finished_at < before
    )
    found = list((await session.execute(ids.limit(limit))).scalars())
    if found:
        await session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(found)))
