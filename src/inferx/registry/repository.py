"""Every SQL statement of the registry. Tenant scoping lives here and nowhere else."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.tables import Model, ModelShare, ModelVersion, User

RANK = {"view": 1, "use": 2, "edit": 3, "owner": 4}


def _shared_with(user_id: uuid.UUID) -> ColumnElement[bool]:
    return exists().where(ModelShare.model_id == Model.id, ModelShare.user_id == user_id)


def visible(user: User) -> Select[Model]:
    """Live models the user may see: owned, shared with them, or any for an admin."""
    stmt = select(Model).where(Model.deleted_at.is_(None))
    if user.role != "admin":
        stmt = stmt.where(or_(Model.owner_id == user.id, _shared_with(user.id)))
    return stmt


async def access(
    session: AsyncSession, user: User, model_id: uuid.UUID
) -> tuple[Model, str] | None:
    """The model and the caller's permission on it, or None when they may not see it."""
    row = (
        await session.execute(
            select(Model, ModelShare.permission)
            .outerjoin(
                ModelShare, and_(ModelShare.model_id == Model.id, ModelShare.user_id == user.id)
            )
            .where(Model.id == model_id, Model.deleted_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    model, shared = row
    if model.owner_id == user.id or user.role == "admin":
        return model, "owner"
    return (model, shared) if shared else None


async def permissions(
    session: AsyncSession, user: User, models: list[Model]
) -> dict[uuid.UUID, str]:
    """The caller's permission on each of ``models`` (all visible to them), in one query."""
    out = {m.id: "owner" for m in models if m.owner_id == user.id or user.role == "admin"}
    rest = [m.id for m in models if m.id not in out]
    if rest:
        rows = await session.execute(
            select(ModelShare.model_id, ModelShare.permission).where(
                ModelShare.model_id.in_(rest), ModelShare.user_id == user.id
            )
        )
        out.update({model_id: permission for model_id, permission in rows.all()})
    return out


async def find_owned_by_name(session: AsyncSession, owner_id: uuid.UUID, name: str) -> Model | None:
    stmt = select(Model).where(
        Model.owner_id == owner_id, Model.name == name, Model.deleted_at.is_(None)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def max_version(session: AsyncSession, model_id: uuid.UUID) -> int:
    stmt = select(func.coalesce(func.max(ModelVersion.version), 0)).where(
        ModelVersion.model_id == model_id
    )
    return int((await session.execute(stmt)).scalar_one())


async def versions(
    session: AsyncSession, model_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[ModelVersion]]:
    out: dict[uuid.UUID, list[ModelVersion]] = {m: [] for m in model_ids}
    if not model_ids:
        return out
    rows = await session.execute(
        select(ModelVersion)
        .where(ModelVersion.model_id.in_(model_ids))
        .order_by(ModelVersion.version)
    )
    for v in rows.scalars():
        out[v.model_id].append(v)
    return out


async def version(session: AsyncSession, model_id: uuid.UUID, number: int) -> ModelVersion | None:
    stmt = select(ModelVersion).where(
        ModelVersion.model_id == model_id, ModelVersion.version == number
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def default_version(session: AsyncSession, model_id: uuid.UUID) -> ModelVersion | None:
    stmt = (
        select(ModelVersion)
        .where(ModelVersion.model_id == model_id, ModelVersion.status == "active")
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def filtered(
    stmt: Select[Model],
    *,
    name: str | None,
    status: str | None,
    framework: str | None,
) -> Select[Model]:
    if name:
        stmt = stmt.where(Model.name.contains(name, autoescape=True))
    if framework:
        stmt = stmt.where(
            exists().where(ModelVersion.model_id == Model.id, ModelVersion.framework == framework)
        )
    if status:
        has = exists().where(ModelVersion.model_id == Model.id, ModelVersion.status == status)
        if status == "active":
            stmt = stmt.where(has)
        else:
            # A model's status is its best version's: active beats deprecated beats archived.
            better = ["active"] if status == "deprecated" else ["active", "deprecated"]
            stmt = stmt.where(
                has,
                ~exists().where(ModelVersion.model_id == Model.id, ModelVersion.status.in_(better)),
            )
    return stmt


async def page(
    session: AsyncSession,
    stmt: Select[Model],
    *,
    sort: Literal["created_at", "name"],
    order: Literal["asc", "desc"],
    limit: int,
    offset: int,
) -> tuple[list[Model], int]:
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    column = Model.name if sort == "name" else Model.created_at
    ordering = column.asc() if order == "asc" else column.desc()
    rows = await session.execute(stmt.order_by(ordering, Model.id).limit(limit).offset(offset))
    return list(rows.scalars()), total


async def shares(session: AsyncSession, model_id: uuid.UUID) -> list[tuple[ModelShare, str]]:
    rows = await session.execute(
        select(ModelShare, User.email)
        .join(User, User.id == ModelShare.user_id)
        .where(ModelShare.model_id == model_id)
        .order_by(ModelShare.created_at)
    )
    return [(share, email) for share, email in rows.all()]


async def share(
    session: AsyncSession, model_id: uuid.UUID, share_id: uuid.UUID
) -> ModelShare | None:
    stmt = select(ModelShare).where(ModelShare.id == share_id, ModelShare.model_id == model_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def share_for(
    session: AsyncSession, model_id: uuid.UUID, user_id: uuid.UUID
) -> ModelShare | None:
    stmt = select(ModelShare).where(ModelShare.model_id == model_id, ModelShare.user_id == user_id)
    return (await session.execute(stmt)).scalar_one_or_none()
