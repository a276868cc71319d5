"""Short-lived shared state (token denylist, small caches): in-process or Redis.

The Redis implementation mirrors every write in process memory, so a Redis outage degrades to
"this replica still knows what it wrote" rather than forgetting a logout.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

import structlog
from redis.asyncio import Redis

log = structlog.get_logger("inferx.state")


class SharedState(Protocol):
    async def set(self, key: str, value: str, ttl_s: float) -> None: ...
    async def get(self, key: str) -> str | None: ...
    async def exists_any(self, *keys: str) -> bool: ...
    async def close(self) -> None: ...


class MemoryState:
    def __init__(self, max_items: int = 200_000) -> None:
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._max = max_items

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        self._items[key] = (value, time.monotonic() + ttl_s)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    async def get(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] < time.monotonic():
            del self._items[key]
            return None
        return item[0]

    async def exists_any(self, *keys: str) -> bool:
        for key in keys:
            if await self.get(key) is not None:
                return True
        return False

    async def close(self) -> None:
        self._items.clear()


class RedisState:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._local = MemoryState()
        self._degraded = False

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        await self._local.set(key, value, ttl_s)
        try:
            await self._redis.set(self._prefix + key, value, px=max(1, int(ttl_s * 1000)))
            self._mark(ok=True)
        except Exception as exc:
            self._mark(ok=False, error=exc)

    async def get(self, key: str) -> str | None:
        local = await self._local.get(key)
        if local is not None:
            return local
        try:
            value = await self._redis.get(self._prefix + key)
            self._mark(ok=True)
        except Exception as exc:
            self._mark(ok=False, error=exc)
            return None
        return value.decode() if isinstance(value, bytes) else value

    async def exists_any(self, *keys: str) -> bool:
        if await self._local.exists_any(*keys):
            return True
        try:
            found = await self._redis.exists(*(self._prefix + k for k in keys))
            self._mark(ok=True)
        except Exception as exc:
            self._mark(ok=False, error=exc)
            return False
        return bool(found)

    async def close(self) -> None:
        await self._local.close()

    def _mark(self, *, ok: bool, error: Exception | None = None) -> None:
        # Log transitions only: an outage is one line, not one line per request.
        if ok and self._degraded:
            log.info("state.redis_recovered")
        elif not ok and not self._degraded:
            log.warning("state.redis_unavailable", error=type(error).__name__)
        self._degraded = not ok
