"""Accounts and sessions: registration, login with throttling, refresh rotation, logout."""

from __future__ import annotations

import uuid
from datetime import timedelta

from limits import (
    RateLimitItem,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.audit.service import record, record_now
from inferx.auth import repository as tokens_repo
from inferx.auth.dependencies import Principal, denylist_keys
from inferx.auth.schemas import TokenPair
from inferx.context import AppContext
from inferx.db import after_commit
from inferx.errors import Conflict, Forbidden, TooManyRequests, Unauthorized
from inferx.kit.crypto import REFRESH_TOKEN_PREFIX, new_token, sha256_hex
from inferx.kit.time import utcnow
from inferx.tables import RefreshToken, User
from inferx.users import repository as users_repo

BAD_LOGIN = "Invalid email or password."
BAD_REFRESH = "Invalid refresh token."


def _failure_window(ctx: AppContext, amount: int) -> RateLimitItem:
    return RateLimitItemPerSecond(amount, ctx.settings.login_lock_window_s)


async def register(
    ctx: AppContext, session: AsyncSession, email: str, password: str, ip: str
) -> User:
    decision = await ctx.limiter.hit(
        RateLimitItemPerHour(ctx.settings.register_per_ip_per_hour), "register", "ip", ip
    )
    if not decision.allowed:
        ctx.metrics.rate_limited.labels("register").inc()
        raise TooManyRequests(
            "Too many registrations from this address.", retry_after=decision.retry_after
        )
    if await users_repo.get_by_email(session, email) is not None:
        raise Conflict("An account with this email already exists.")
    user = User(email=email, password_hash=await ctx.passwords.hash(password))
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent registration of the same email won
        raise Conflict("An account with this email already exists.") from exc
    await record(session, "user.registered", actor_id=user.id, target_id=user.id, ip=ip)
    return user


async def login(
    ctx: AppContext, session: AsyncSession, email: str, password: str, ip: str
) -> TokenPair:
    email = email.strip().lower()
    per_account = _failure_window(ctx, ctx.settings.login_max_failures_per_account)
    per_ip = _failure_window(ctx, ctx.settings.login_max_failures_per_ip)
    for item, key in ((per_account, ("login", "account", email)), (per_ip, ("login", "ip", ip))):
        decision = await ctx.limiter.peek(item, *key)
        if not decision.allowed:
            ctx.metrics.rate_limited.labels("login").inc()
            raise TooManyRequests(
                "Too many failed logins; try again later.", retry_after=decision.retry_after
            )
    user = await users_repo.get_by_email(session, email)
    ok, new_hash = await ctx.passwords.verify(user.password_hash if user else None, password)
    if not ok or user is None or not user.is_active:
        await ctx.limiter.hit(per_account, "login", "account", email)
        await ctx.limiter.hit(per_ip, "login", "ip", ip)
        ctx.metrics.auth_failures.labels("password").inc()
        await record_now(
            ctx.sessions,
            "login.failed",
            actor_id=user.id if user else None,
            ip=ip,
            reason="disabled" if ok else "bad_credentials",
        )
        raise Unauthorized(BAD_LOGIN)
    await ctx.limiter.clear(per_account, "login", "account", email)
    if new_hash:
        user.password_hash = new_hash
    pair = await _issue(ctx, session, user, family_id=uuid.uuid4())
    await record(session, "login.succeeded", actor_id=user.id, ip=ip)
    return pair


async def refresh(ctx: AppContext, session: AsyncSession, token: str, ip: str) -> TokenPair:
    # Every attempt counts: a client refreshes a few times an hour, a guesser far more often.
    decision = await ctx.limiter.hit(
        RateLimitItemPerMinute(ctx.settings.refresh_per_ip_per_minute), "refresh", "ip", ip
    )
    if not decision.allowed:
        ctx.metrics.rate_limited.labels("refresh").inc()
        raise TooManyRequests(
            "Too many token refreshes from this address.", retry_after=decision.retry_after
        )
    token_hash = sha256_hex(token)
    now = utcnow()
    spent = await tokens_repo.spend(session, token_hash, now)
    if spent is None:
        await _refresh_refused(ctx, session, token_hash, ip)
        raise Unauthorized(BAD_REFRESH)
    user = await users_repo.get(session, spent.user_id)
    if user is None or not user.is_active:
        raise Unauthorized(BAD_REFRESH)
    return await _issue(ctx, session, user, family_id=spent.family_id)


async def _refresh_refused(
    ctx: AppContext, session: AsyncSession, token_hash: str, ip: str
) -> None:
    ctx.metrics.auth_failures.labels("refresh").inc()
    known = await tokens_repo.find(session, token_hash)
    if known is None or known.used_at is None or known.revoked_at is not None:
        return
    # A spent token came back: someone holds a copy. The whole family dies, for both holders,
    # in a transaction of its own (the request's rolls back; on SQLite it also holds the lock).
    family_id, user_id = known.family_id, known.user_id
    await session.rollback()
    async with ctx.sessions() as own, own.begin():
        await tokens_repo.revoke_families(own, [family_id], utcnow())
    await _deny_families(ctx, [family_id])
    await record_now(
        ctx.sessions, "refresh_token.reused", actor_id=user_id, ip=ip, family_id=str(family_id)
    )


async def logout(ctx: AppContext, session: AsyncSession, principal: Principal, ip: str) -> None:
    claims = principal.claims
    if claims is None:
        raise Forbidden("Log out with the access token of a session, not with an API key.")
    jti_key, _ = denylist_keys(claims)
    remaining = max(1.0, (claims.expires_at - utcnow()).total_seconds() + 60)
    await ctx.state.set(jti_key, "1", remaining)
    await tokens_repo.revoke_families(session, [claims.family_id], utcnow())
    await _deny_families(ctx, [claims.family_id])
    await record(session, "logout", actor_id=principal.user.id, ip=ip)


async def change_password(
    ctx: AppContext, session: AsyncSession, principal: Principal, current: str, new: str, ip: str
) -> None:
    user = await users_repo.get(session, principal.user.id)
    if user is None:
        raise Unauthorized("Invalid or expired access token.")
    ok, _ = await ctx.passwords.verify(user.password_hash, current)
    if not ok:
        ctx.metrics.auth_failures.labels("password").inc()
        await record_now(ctx.sessions, "password.change_failed", actor_id=user.id, ip=ip)
        raise Forbidden("current_password is incorrect.")
    user.password_hash = await ctx.passwords.hash(new)
    keep = principal.claims.family_id if principal.claims else None
    now = utcnow()
    families = await tokens_repo.live_families(session, user.id, now, except_family=keep)
    await tokens_repo.revoke_families(session, families, now)
    await _deny_families(ctx, families)
    await record(
        session, "password.changed", actor_id=user.id, ip=ip, revoked_sessions=len(families)
    )
    user_changed(ctx, session, user.id)


def user_changed(ctx: AppContext, session: AsyncSession, user_id: uuid.UUID) -> None:
    """Every process drops its cached copy of the user once this transaction commits."""
    payload = {"user_id": str(user_id)}
    after_commit(session, lambda: ctx.events.publish("user.changed", payload))


async def _issue(
    ctx: AppContext, session: AsyncSession, user: User, *, family_id: uuid.UUID
) -> TokenPair:
    refresh_token = new_token(REFRESH_TOKEN_PREFIX)
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=sha256_hex(refresh_token),
            expires_at=utcnow() + timedelta(days=ctx.settings.refresh_token_ttl_days),
        )
    )
    await session.flush()
    return TokenPair(
        access_token=ctx.signer.issue(user.id, family_id),
        refresh_token=refresh_token,
        expires_in=ctx.signer.ttl_s,
    )


async def _deny_families(ctx: AppContext, family_ids: list[uuid.UUID]) -> None:
    # Access tokens of a revoked family stay refused until they would have expired anyway.
    for family_id in family_ids:
        await ctx.state.set(f"fam:{family_id}", "1", ctx.signer.ttl_s + 60)
