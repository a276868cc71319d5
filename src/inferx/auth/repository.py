from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.tables import RefreshToken


async def spend(session: AsyncSession, token_hash: str, now: datetime) -> RefreshToken | None:
    """Mark a live token used, atomically: of two concurrent refreshes exactly one wins."""
    stmt = (
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == token_hash,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(RefreshToken)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def find(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    stmt = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def revoke_families(
    session: AsyncSession, family_ids: list[uuid.UUID], now: datetime
) -> None:
    if family_ids:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id.in_(family_ids), RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )


async def live_families(
    session: AsyncSession, user_id: uuid.UUID, now: datetime, *, except_family: uuid.UUID | None
) -> list[uuid.UUID]:
    stmt = select(RefreshToken.family_id).where(
        RefreshToken.user_id == user_id,
        RefreshToken.revoked_at.is_(None),
        RefreshToken.expires_at > now,
    )
    if except_family is not None:
        stmt = stmt.where(RefreshToken.family_id != except_family)
    return list((await session.execute(stmt.distinct())).scalars())
