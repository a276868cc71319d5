"""``last_used_at`` without a database write per request: remembered in memory, flushed in bulk."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from inferx.db import unit_of_work
from inferx.kit.time import utcnow
from inferx.tables import ApiKey

log = structlog.get_logger("inferx.api_keys")


class KeyUsage:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], interval_s: float) -> None:
        self._sessions = sessions
        self._interval_s = interval_s
        self._pending: dict[uuid.UUID, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def touch(self, key_id: uuid.UUID) -> None:
        self._pending[key_id] = utcnow()

    def pending(self, key_id: uuid.UUID) -> datetime | None:
        return self._pending.get(key_id)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-key-usage-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
            except Exception as exc:  # the database may be down; keep the numbers for next time
                log.warning("api_keys.usage_flush_failed", error=type(exc).__name__)

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            async with unit_of_work(self._sessions) as session:
                for key_id, when in batch.items():
                    await session.execute(
                        update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when)
                    )
        except Exception:
            for key_id, when in batch.items():
                self._pending.setdefault(key_id, when)
            raise
