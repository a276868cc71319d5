from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from inferx.api_keys import repository
from inferx.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead, ApiKeyUpdate
from inferx.audit.service import record
from inferx.context import AppContext
from inferx.db import after_commit
from inferx.errors import Conflict, NotFound
from inferx.kit.crypto import API_KEY_PREFIX, new_token, sha256_hex
from inferx.kit.time import utcnow
from inferx.tables import ApiKey, User

PREFIX_LEN = 12


class ApiKeyNotFound(NotFound):
    title = "API key not found"


async def create(
    ctx: AppContext, session: AsyncSession, owner: User, body: ApiKeyCreate, ip: str
) -> ApiKeyCreated:
    if await repository.count_active(session, owner.id) >= ctx.settings.api_key_max_active:
        raise Conflict(
            f"You already have {ctx.settings.api_key_max_active} active API keys; revoke one first."
        )
    secret = new_token(API_KEY_PREFIX)
    days = body.expires_in_days or ctx.settings.api_key_default_days
    key = ApiKey(
        user_id=owner.id,
        name=body.name,
        prefix=secret[:PREFIX_LEN],
        key_hash=sha256_hex(secret),
        expires_at=utcnow() + timedelta(days=days),
    )
    session.add(key)
    await session.flush()
    await record(
        session, "api_key.created", actor_id=owner.id, target_id=key.id, ip=ip, prefix=key.prefix
    )
    return ApiKeyCreated(
        id=key.id,
        name=key.name,
        key=secret,
        prefix=key.prefix,
        expires_at=key.expires_at,
        created_at=key.created_at,
    )


def _read(ctx: AppContext, key: ApiKey) -> ApiKeyRead:
    read = ApiKeyRead.model_validate(key)
    pending = ctx.key_usage.pending(key.id)
    if pending is not None:
        read.last_used_at = pending
    return read


async def list_keys(ctx: AppContext, session: AsyncSession, owner: User) -> list[ApiKeyRead]:
    return [_read(ctx, k) for k in await repository.list_owned(session, owner.id)]


async def get(ctx: AppContext, session: AsyncSession, owner: User, key_id: uuid.UUID) -> ApiKeyRead:
    return _read(ctx, await _owned(session, owner, key_id))


async def update(
    ctx: AppContext,
    session: AsyncSession,
    owner: User,
    key_id: uuid.UUID,
    body: ApiKeyUpdate,
    ip: str,
) -> ApiKeyRead:
    key = await _owned(session, owner, key_id)
    if body.name is not None:
        key.name = body.name
    if body.is_active is not None and body.is_active != key.is_active:
        if body.is_active and key.revoked_at is not None:
            raise Conflict("A revoked API key cannot be re-activated; create a new one.")
        if (
            body.is_active
            and await repository.count_active(session, owner.id) >= ctx.settings.api_key_max_active
        ):
            raise Conflict(f"You already have {ctx.settings.api_key_max_active} active API keys.")
        key.is_active = body.is_active
        event = "api_key.enabled" if body.is_active else "api_key.disabled"
        await record(session, event, actor_id=owner.id, target_id=key.id, ip=ip, prefix=key.prefix)
        _key_changed(ctx, session, key)
    await session.flush()
    return _read(ctx, key)


async def revoke(
    ctx: AppContext, session: AsyncSession, owner: User, key_id: uuid.UUID, ip: str
) -> None:
    key = await _owned(session, owner, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        key.is_active = False
        await record(
            session,
            "api_key.revoked",
            actor_id=owner.id,
            target_id=key.id,
            ip=ip,
            prefix=key.prefix,
        )
        _key_changed(ctx, session, key)


def _key_changed(ctx: AppContext, session: AsyncSession, key: ApiKey) -> None:
    payload = {"api_key_id": str(key.id), "user_id": str(key.user_id)}
    after_commit(session, lambda: ctx.events.publish("api_key.changed", payload))


async def _owned(session: AsyncSession, owner: User, key_id: uuid.UUID) -> ApiKey:
    key = await repository.get_owned(session, owner.id, key_id)
    if key is None:
        raise ApiKeyNotFound(f"No API key {key_id}.")
    return key
