from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from inferx.audit import repository as audit_repo
from inferx.auth.dependencies import AdminUser
from inferx.context import Ctx, Session
from inferx.kit.http import API_PREFIX, ClientIP, Paging
from inferx.kit.schemas import Page
from inferx.users import repository, service
from inferx.users.schemas import Role, Tier, UserAdminRead, UserAdminUpdate

router = APIRouter(prefix=f"{API_PREFIX}/admin", tags=["admin"])


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    event: str
    actor_id: uuid.UUID | None
    target_id: uuid.UUID | None
    ip: str | None
    request_id: str | None
    details: dict[str, Any]
    created_at: datetime


@router.get("/users", response_model=Page[UserAdminRead])
async def list_users(
    admin: AdminUser,
    session: Session,
    paging: Paging,
    email: str | None = None,
    role: Role | None = None,
    tier: Tier | None = None,
) -> Page[UserAdminRead]:
    """All users (admin)."""
    stmt = repository.list_statement(email=email, role=role, tier=tier)
    users, total = await repository.page(session, stmt, limit=paging.limit, offset=paging.offset)
    return Page(
        items=[UserAdminRead.model_validate(u) for u in users],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.patch("/users/{user_id}", response_model=UserAdminRead)
async def update_user(
    user_id: uuid.UUID,
    body: UserAdminUpdate,
    admin: AdminUser,
    ctx: Ctx,
    session: Session,
    ip: ClientIP,
) -> UserAdminRead:
    """Change a user's role, tier, active flag or quota overrides (admin)."""
    return UserAdminRead.model_validate(
        await service.admin_update(ctx, session, admin, user_id, body, ip)
    )


@router.get("/audit-events", response_model=Page[AuditEventRead])
async def list_audit_events(
    admin: AdminUser,
    session: Session,
    paging: Paging,
    event: str | None = None,
    actor_id: uuid.UUID | None = None,
) -> Page[AuditEventRead]:
    """Security events, newest first (admin)."""
    rows, total = await audit_repo.page(
        session, event=event, actor_id=actor_id, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[AuditEventRead.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )
