from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.tables import ApiKey, User


async def find_by_hash(session: AsyncSession, key_hash: str) -> tuple[ApiKey, User] | None:
    row = (
        await session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == key_hash)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def get_owned(session: AsyncSession, owner_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
    return (
        await session.execute(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == owner_id))
    ).scalar_one_or_none()


async def list_owned(session: AsyncSession, owner_id: uuid.UUID) -> list[ApiKey]:
    rows = await session.execute(
        select(ApiKey).where(ApiKey.user_id == owner_id).order_by(ApiKey.created_at.desc())
    )
    return list(rows.scalars())


async def count_active(session: AsyncSession, owner_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(
        ApiKey.user_id == owner_id, ApiKey.is_active.is_(True), ApiKey.revoked_at.is_(None)
    )
    return (await session.execute(stmt)).scalar_one()
