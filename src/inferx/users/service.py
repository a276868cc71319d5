from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from inferx.audit.service import record
from inferx.auth.service import user_changed
from inferx.context import AppContext
from inferx.errors import Conflict, NotFound
from inferx.tables import User
from inferx.users import repository
from inferx.users.schemas import QUOTA_OVERRIDES, UserAdminUpdate


class UserNotFound(NotFound):
    title = "User not found"


async def admin_update(
    ctx: AppContext,
    session: AsyncSession,
    admin: User,
    user_id: uuid.UUID,
    body: UserAdminUpdate,
    ip: str,
) -> User:
    user = await repository.get(session, user_id)
    if user is None:
        raise UserNotFound(f"No user {user_id}.")
    if user.id == admin.id and (body.role == "user" or body.is_active is False):
        raise Conflict("Admins cannot demote or disable themselves; ask another admin.")
    for field in ("role", "tier", "is_active"):
        new = getattr(body, field)
        old = getattr(user, field)
        if new is not None and new != old:
            setattr(user, field, new)
            await record(
                session,
                f"user.{field}_changed",
                actor_id=admin.id,
                target_id=user.id,
                ip=ip,
                old=old,
                new=new,
            )
    for field in QUOTA_OVERRIDES:
        new = getattr(body, field)
        old = getattr(user, field)
        if field in body.model_fields_set and new != old:
            setattr(user, field, new)
            await record(
                session,
                f"user.{field}_changed",
                actor_id=admin.id,
                target_id=user.id,
                ip=ip,
                old=old,
                new=new,
            )
    await session.flush()
    user_changed(ctx, session, user.id)
    return user
