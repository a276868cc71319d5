"""Who is calling: an access JWT or an API key, resolved once per request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.auth.tokens import AccessClaims, InvalidToken
from inferx.context import AppContext, Ctx, Session
from inferx.errors import Forbidden, Unauthorized
from inferx.kit.crypto import API_KEY_PREFIX, same, sha256_hex
from inferx.kit.time import utcnow
from inferx.tables import User

# Declared for OpenAPI (Swagger's Authorize button); the actual parsing is below.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)

MAX_CREDENTIAL_LEN = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller. ``user`` is a detached copy (cached): load the row to change it."""

    user: User
    via: Literal["jwt", "api_key"]
    api_key_id: uuid.UUID | None = None
    claims: AccessClaims | None = None


def denylist_keys(claims: AccessClaims) -> tuple[str, str]:
    return f"jti:{claims.jti}", f"fam:{claims.family_id}"


async def current_principal(
    request: Request,
    ctx: Ctx,
    session: Session,
    bearer: Annotated[str | None, Depends(oauth2_scheme)] = None,
    api_key: Annotated[str | None, Depends(api_key_scheme)] = None,
) -> Principal:
    return await resolve_principal(request, ctx, session, bearer, api_key)


def credentials(request: Request) -> tuple[str | None, str | None]:
    """(bearer token, API key) from the headers, as the two security schemes read them."""
    api_key = request.headers.get("x-api-key") or None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    bearer = token.strip() or None if scheme.lower() == "bearer" else None
    return bearer, api_key


async def resolve_principal(
    request: Request,
    ctx: AppContext,
    session: AsyncSession,
    bearer: str | None,
    api_key: str | None,
) -> Principal:
    """Who is calling. Also usable without dependency injection (the prediction hot path)."""
    credential = api_key or bearer
    if not credential:
        raise Unauthorized(
            "Send an access token (Authorization: Bearer ...) or an API key (X-API-Key)."
        )
    if len(credential) > MAX_CREDENTIAL_LEN:
        raise Unauthorized("Invalid credentials.")
    if credential.startswith(API_KEY_PREFIX):
        principal = await _from_api_key(ctx, session, credential)
    elif api_key:
        ctx.metrics.auth_failures.labels("api_key").inc()
        raise Unauthorized("Invalid API key.")
    else:
        principal = await _from_jwt(ctx, session, credential)
    request.state.user_id = str(principal.user.id)
    return principal


async def _from_api_key(ctx: AppContext, session: AsyncSession, key: str) -> Principal:
    key_hash = sha256_hex(key)
    record = await ctx.auth_cache.key(session, key_hash)
    if record is None or not same(record.key_hash, key_hash):
        ctx.metrics.auth_failures.labels("api_key").inc()
        raise Unauthorized("Invalid API key.")
    if not record.is_active or record.revoked:
        raise Unauthorized("This API key has been revoked.")
    if record.expires_at <= utcnow():
        raise Unauthorized("This API key has expired.")
    user = await ctx.auth_cache.user(session, record.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("This account is disabled.")
    ctx.key_usage.touch(record.id)
    return Principal(user=user, via="api_key", api_key_id=record.id)


async def _from_jwt(ctx: AppContext, session: AsyncSession, token: str) -> Principal:
    try:
        claims = ctx.signer.verify(token)
    except InvalidToken as exc:
        ctx.metrics.auth_failures.labels("jwt").inc()
        raise Unauthorized("Invalid or expired access token.") from exc
    if await ctx.state.exists_any(*denylist_keys(claims)):
        raise Unauthorized("This access token has been revoked.")
    user = await ctx.auth_cache.user(session, claims.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("Invalid or expired access token.")
    return Principal(user=user, via="jwt", claims=claims)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_user(principal: CurrentPrincipal) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    if user.role != "admin":
        raise Forbidden("This operation needs the admin role.")
    return user


AdminUser = Annotated[User, Depends(admin_user)]
