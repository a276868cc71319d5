"""Moving-window rate limiting with the ``limits`` library, in process or on Redis.

With Redis configured, a Redis failure (down, hung: explicit socket timeouts) falls back to an
in-process limiter for a few seconds, logs the degradation once and retries Redis by itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

log = structlog.get_logger("inferx.quotas")

RETRY_REDIS_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # unix time when a slot frees up

    @property
    def retry_after(self) -> int:
        return max(1, int(self.reset_at - time.time() + 0.999))


class Limiter:
    def __init__(
        self, redis_url: str | None = None, *, prefix: str = "inferx", timeout_s: float = 0.25
    ) -> None:
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis: MovingWindowRateLimiter | None = None
        self._storage: Storage | None = None
        if redis_url:
            self._storage = RedisStorage(
                "async+" + redis_url if not redis_url.startswith("async+") else redis_url,
                implementation="redispy",
                key_prefix=prefix.rstrip(":") + ":limits",
                wrap_exceptions=True,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
            )
            self._redis = MovingWindowRateLimiter(self._storage)
        self._down_until = 0.0
        self.degraded = False

    @staticmethod
    def item(spec: str) -> RateLimitItem:
        return parse(spec)

    async def hit(self, item: RateLimitItem, *key: str, cost: int = 1) -> Decision:
        """Count ``cost`` against the window; refused when it would exceed the limit."""
        return await self._call(item, key, cost=cost)

    async def peek(self, item: RateLimitItem, *key: str) -> Decision:
        """Would one more hit be allowed? Counts nothing."""
        return await self._call(item, key, cost=0)

    async def clear(self, item: RateLimitItem, *key: str) -> None:
        limiter = self._active()
        try:
            await limiter.clear(item, *key)
        except Exception as exc:
            self._fail(exc)
        await self._memory.clear(item, *key)

    async def _call(self, item: RateLimitItem, key: tuple[str, ...], *, cost: int) -> Decision:
        limiter = self._active()
        try:
            decision = await self._decide(limiter, item, key, cost)
        except Exception as exc:
            if limiter is self._memory:
                raise
            self._fail(exc)
            return await self._decide(self._memory, item, key, cost)
        if limiter is self._redis and self.degraded:
            self.recovered()
        return decision

    @staticmethod
    async def _decide(
        limiter: MovingWindowRateLimiter, item: RateLimitItem, key: tuple[str, ...], cost: int
    ) -> Decision:
        allowed = (
            await limiter.hit(item, *key, cost=cost) if cost else await limiter.test(item, *key)
        )
        stats = await limiter.get_window_stats(item, *key)
        return Decision(allowed, item.amount, stats.remaining, stats.reset_time)

    def _active(self) -> MovingWindowRateLimiter:
        if self._redis is None:
            return self._memory
        if self.degraded and time.monotonic() >= self._down_until:
            return self._redis  # half-open: try Redis again
        return self._memory if self.degraded else self._redis

    def _fail(self, exc: Exception) -> None:
        if not self.degraded:
            log.warning("quotas.redis_unavailable", error=type(exc).__name__, fallback="in-process")
        self.degraded = True
        self._down_until = time.monotonic() + RETRY_REDIS_AFTER_S

    def recovered(self) -> None:
        if self.degraded:
            log.info("quotas.redis_recovered")
        self.degraded = False

    async def close(self) -> None:
        return None
