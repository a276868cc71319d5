"""Credentials and users cached briefly in process: the warm request path skips the database.

Entries are copies detached from any session. Revocations, user changes and deactivations
reach every process through the event bus (see ``subscribe``) well within the TTL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from inferx.api_keys import repository as keys_repo
from inferx.events import EventBus
from inferx.kit.ttlcache import TtlCache
from inferx.tables import User
from inferx.users import repository as users_repo


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: uuid.UUID
    key_hash: str
    user_id: uuid.UUID
    is_active: bool
    revoked: bool
    expires_at: datetime


def detached(user: User) -> User:
    """A transient copy: safe to share between requests, never flushed by accident."""
    return User(**{c.key: getattr(user, c.key) for c in User.__mapper__.column_attrs})


class AuthCache:
    def __init__(self, ttl_s: float, stale_s: float) -> None:
        self.keys: TtlCache[str, KeyRecord | None] = TtlCache(ttl_s, stale_s)
        self.users: TtlCache[uuid.UUID, User | None] = TtlCache(ttl_s, stale_s)

    async def key(self, session: AsyncSession, key_hash: str) -> KeyRecord | None:
        async def load() -> KeyRecord | None:
            found = await keys_repo.find_by_hash(session, key_hash)
            if found is None:
                return None
            key, user = found
            self.users.put(user.id, detached(user))
            return KeyRecord(
                id=key.id,
                key_hash=key.key_hash,
                user_id=key.user_id,
                is_active=key.is_active,
                revoked=key.revoked_at is not None,
                expires_at=key.expires_at,
            )

        return await self.keys.get_or_load(key_hash, load)

    async def user(self, session: AsyncSession, user_id: uuid.UUID) -> User | None:
        async def load() -> User | None:
            user = await users_repo.get(session, user_id)
            return None if user is None else detached(user)

        return await self.users.get_or_load(user_id, load)

    def subscribe(self, events: EventBus) -> None:
        async def on_user(_event: str, payload: dict[str, Any]) -> None:
            self.users.invalidate(uuid.UUID(payload["user_id"]))

        async def on_key(_event: str, payload: dict[str, Any]) -> None:
            self.keys.clear()

        events.subscribe("user.changed", on_user)
        events.subscribe("api_key.changed", on_key)
