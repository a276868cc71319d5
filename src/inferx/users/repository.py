from __future__ import annotations

import uuid

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.tables import User


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


def list_statement(*, email: str | None, role: str | None, tier: str | None) -> Select[User]:
    stmt = select(User)
    if email:
        stmt = stmt.where(User.email.contains(email.lower(), autoescape=True))
    if role:
        stmt = stmt.where(User.role == role)
    if tier:
        stmt = stmt.where(User.tier == tier)
    return stmt


async def page(
    session: AsyncSession, stmt: Select[User], *, limit: int, offset: int
) -> tuple[list[User], int]:
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    rows = await session.execute(
        stmt.order_by(User.created_at, User.id).limit(limit).offset(offset)
    )
    return list(rows.scalars()), total
