"""Rate limiting in process or on Redis, failing open to a per-process limiter.

Two kinds of limits go through here: single moving windows from the ``limits`` library (the
auth throttles: ``hit``/``peek``/``clear``) and groups of windows checked and counted together
(quotas: ``acquire``/``acquire_weighted``, see ``windows.py``).

With Redis configured, a Redis failure (down, or hung: explicit socket timeouts, no retries)
opens a circuit breaker: calls go to the in-process limiter, the degradation is logged once,
and every ``retry_s`` one call (never more at a time) probes Redis again; its success closes
the breaker and logs the recovery once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from inferx.quotas.windows import MemoryWindows, Outcome, RedisWindows, Tally, Window

log = structlog.get_logger("inferx.quotas")

RETRY_REDIS_AFTER_S = 5.0

T = TypeVar("T")


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
        self,
        redis_url: str | None = None,
        *,
        prefix: str = "inferx",
        timeout_s: float = 0.25,
        retry_s: float = RETRY_REDIS_AFTER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock  # wall time of hits; replaceable so tests can move through a day
        self.retry_s = retry_s
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._local = MemoryWindows()
        self._client: Redis | None = None
        self._redis: MovingWindowRateLimiter | None = None
        self._windows: RedisWindows | None = None
        # A Redis call may connect then run one command: each bounded by the socket timeout.
        self._budget_s = 2 * timeout_s + 0.05
        if redis_url:
            base = prefix.rstrip(":")
            self._client = Redis.from_url(
                redis_url.removeprefix("async+"),
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                # A pooled connection that died with an earlier Redis fails once: retry that on
                # a new connection at once, but never a timeout (the fallback is the retry).
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
            shared: dict[str, Any] = {"connection_pool": self._client.connection_pool}
            storage = RedisStorage(
                "async+" + redis_url.removeprefix("async+"),
                implementation="redispy",
                key_prefix=base + ":limits",
                wrap_exceptions=True,
                **shared,  # one pool, with the timeouts and no-retry policy above
            )
            self._redis = MovingWindowRateLimiter(storage)
            self._windows = RedisWindows(self._client, base + ":", clock)
        self._down_until = 0.0
        self._probing = False
        self.degraded = False
        self.degraded_since: float | None = None
        self.fallback_calls = 0

    @property
    def backend(self) -> str:
        return "in-process" if self._client is None else "redis"

    def status(self) -> dict[str, Any]:
        since = self.degraded_since
        return {
            "backend": self.backend,
            "degraded": self.degraded,
            "degraded_since": None
            if since is None
            else datetime.fromtimestamp(since, UTC).isoformat(),
            "fallback_calls": self.fallback_calls,
        }

    # -- single windows from ``limits`` (auth throttles) -------------------------------------

    @staticmethod
    def item(spec: str) -> RateLimitItem:
        return parse(spec)

    async def hit(self, item: RateLimitItem, *key: str, cost: int = 1) -> Decision:
        """Count ``cost`` against the window; refused when it would exceed the limit."""
        return await self._call_item(item, key, cost=cost)

    async def peek(self, item: RateLimitItem, *key: str) -> Decision:
        """Would one more hit be allowed? Counts nothing."""
        return await self._call_item(item, key, cost=0)

    async def clear(self, item: RateLimitItem, *key: str) -> None:
        redis = self._redis

        async def on_redis() -> None:
            assert redis is not None
            await redis.clear(item, *key)

        await self._run(on_redis if redis is not None else None, _noop)
        await self._memory.clear(item, *key)

    async def _call_item(self, item: RateLimitItem, key: tuple[str, ...], *, cost: int) -> Decision:
        redis = self._redis

        async def on_redis() -> Decision:
            assert redis is not None
            return await self._decide(redis, item, key, cost)

        async def on_memory() -> Decision:
            return await self._decide(self._memory, item, key, cost)

        return await self._run(on_redis if redis is not None else None, on_memory)

    @staticmethod
    async def _decide(
        limiter: MovingWindowRateLimiter, item: RateLimitItem, key: tuple[str, ...], cost: int
    ) -> Decision:
        allowed = (
            await limiter.hit(item, *key, cost=cost) if cost else await limiter.test(item, *key)
        )
        stats = await limiter.get_window_stats(item, *key)
        return Decision(allowed, item.amount, stats.remaining, stats.reset_time)

    # -- groups of windows (quotas) ----------------------------------------------------------

    async def acquire(
        self,
        windows: tuple[Window, ...],
        *,
        cost: int = 1,
        tally: Tally | None = None,
        fallback_divisor: int = 1,
    ) -> Outcome:
        """Count ``cost`` in every window, or in none when one of them is full. ``cost=0``
        only reads. During a Redis outage each window allows ``limit / fallback_divisor``."""
        now = self.clock()
        shared = self._windows

        async def on_redis() -> Outcome:
            assert shared is not None
            return await shared.acquire(windows, cost, now, tally)

        async def on_memory() -> Outcome:
            local = windows if shared is None else _shrink(windows, fallback_divisor)
            return await self._local.acquire(local, cost, now, tally)

        return await self._run(on_redis if shared is not None else None, on_memory)

    async def acquire_weighted(
        self, window: Window, *, cost: int, fallback_divisor: int = 1
    ) -> Outcome:
        """Count ``cost`` (e.g. rows) in one window kept as one entry per call."""
        now = self.clock()
        shared = self._windows

        async def on_redis() -> Outcome:
            assert shared is not None
            return await shared.acquire_weighted(window, cost, now)

        async def on_memory() -> Outcome:
            local = window if shared is None else _shrink((window,), fallback_divisor)[0]
            return await self._local.acquire_weighted(local, cost, now)

        return await self._run(on_redis if shared is not None else None, on_memory)

    async def tally(self, key: str) -> dict[str, int]:
        """Counts of a tally: Redis's plus what this process counted while Redis was away."""
        shared = self._windows
        counts = await self._local.tally(key)

        async def on_redis() -> dict[str, int]:
            assert shared is not None
            return await shared.tally(key)

        async def on_memory() -> dict[str, int]:
            return {}

        if shared is not None:
            for field, n in (await self._run(on_redis, on_memory)).items():
                counts[field] = counts.get(field, 0) + n
        return counts

    async def clear_windows(self, *keys: str) -> None:
        shared = self._windows

        async def on_redis() -> None:
            assert shared is not None
            await shared.clear(*keys)

        await self._run(on_redis if shared is not None else None, _noop)
        await self._local.clear(*keys)

    # -- the circuit breaker -----------------------------------------------------------------

    async def _run(
        self,
        on_redis: Callable[[], Awaitable[T]] | None,
        on_memory: Callable[[], Awaitable[T]],
    ) -> T:
        if on_redis is not None and self._use_redis():
            probe = self.degraded
            try:
                async with asyncio.timeout(self._budget_s):
                    result = await on_redis()
            except Exception as exc:  # down, hung, refused, or a storage error: fail open
                self._fail(exc)
            else:
                if probe:
                    self._recovered()
                return result
            finally:
                if probe:
                    self._probing = False
        if on_redis is not None:
            self.fallback_calls += 1
        return await on_memory()

    def _use_redis(self) -> bool:
        if not self.degraded:
            return True
        if self._probing or time.monotonic() < self._down_until:
            return False
        self._probing = True  # half-open: this call tries Redis, concurrent ones do not
        return True

    def _fail(self, exc: Exception) -> None:
        if not self.degraded:
            log.warning(
                "quotas.redis_unavailable",
                error=type(exc).__name__,
                fallback="in-process",
                retry_s=self.retry_s,
            )
            self.degraded = True
            self.degraded_since = time.time()
        self._down_until = time.monotonic() + self.retry_s

    def _recovered(self) -> None:
        if self.degraded:
            since = self.degraded_since or time.time()
            log.info("quotas.redis_recovered", degraded_s=round(time.time() - since, 1))
        self.degraded = False
        self.degraded_since = None

    async def close(self) -> None:
        if self._windows is not None:
            await self._windows.close()
        if self._client is not None:
            await self._client.aclose()


def _shrink(windows: tuple[Window, ...], divisor: int) -> tuple[Window, ...]:
    if divisor <= 1:
        return windows
    return tuple(
        replace(w, limit=math.ceil(w.limit / divisor)) if w.limit > 0 else w for w in windows
    )


async def _noop() -> None:
    return None
