from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from inferx.api_keys import service
from inferx.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead, ApiKeyUpdate
from inferx.auth.dependencies import CurrentUser
from inferx.context import Ctx, Session
from inferx.kit.http import API_PREFIX, ClientIP

router = APIRouter(prefix=f"{API_PREFIX}/api-keys", tags=["api-keys"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_key(
    body: ApiKeyCreate, user: CurrentUser, ctx: Ctx, session: Session, ip: ClientIP
) -> ApiKeyCreated:
    """Create an API key; the secret is shown only in this response."""
    return await service.create(ctx, session, user, body, ip)


@router.get("", response_model=list[ApiKeyRead])
async def list_keys(user: CurrentUser, ctx: Ctx, session: Session) -> list[ApiKeyRead]:
    """Your API keys (prefix and usage, never the secret)."""
    return await service.list_keys(ctx, session, user)


@router.get("/{key_id}", response_model=ApiKeyRead)
async def get_key(key_id: uuid.UUID, user: CurrentUser, ctx: Ctx, session: Session) -> ApiKeyRead:
    """One of your API keys."""
    return await service.get(ctx, session, user, key_id)


@router.patch("/{key_id}", response_model=ApiKeyRead)
async def update_key(
    key_id: uuid.UUID,
    body: ApiKeyUpdate,
    user: CurrentUser,
    ctx: Ctx,
    session: Session,
    ip: ClientIP,
) -> ApiKeyRead:
    """Rename, disable or re-enable an API key."""
    return await service.update(ctx, session, user, key_id, body, ip)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(
    key_id: uuid.UUID, user: CurrentUser, ctx: Ctx, session: Session, ip: ClientIP
) -> Response:
    """Revoke an API key for good."""
    await service.revoke(ctx, session, user, key_id, ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
