"""Prediction result cache for deterministic models: in-process LRU, or Redis when configured.

Key: model version id + SHA-256 of the canonical input (dtype, shape, bytes). Authorization
always happens before a lookup, so a hit never crosses tenants.

A version whose inputs never repeat gains nothing from the cache but pays for it on every
request (a digest, a lookup and a store: with Redis, round trips). ``Admission`` watches each
version's hit rate and stops using the cache for a version that stays under ``MIN_HIT_RATE``;
it keeps watching for repeats in process and turns the cache back on when they come.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from typing import Any, Protocol

import numpy as np
import orjson
import structlog
from redis.asyncio import Redis

from inferx.kit.coalesce import Coalescer

log = structlog.get_logger("inferx.inference")


def input_digest(X: np.ndarray, want_proba: bool) -> str:
    h = hashlib.sha256()
    h.update(f"{X.dtype.str}|{X.shape}|{int(want_proba)}|".encode())
    h.update(
        np.ascontiguousarray(X).tobytes() if X.dtype != object else json.dumps(X.tolist()).encode()
    )
    return h.hexdigest()


def input_fingerprint(X: np.ndarray) -> int:
    """A cheap in-process hash of the input, for spotting repeats while the cache is off."""
    return hash(np.ascontiguousarray(X).tobytes()) if X.dtype != object else hash(repr(X.tolist()))


class Admission:
    """Is the cache worth using for one version? Judged anew every ``window`` requests: on
    while at least ``min_hit_rate`` of lookups hit; while off, a request whose input this
    process saw among the last ``remember`` counts as a hit it would have had."""

    __slots__ = ("caching", "_window", "_min", "_remember", "_requests", "_hits", "_seen")

    def __init__(self, window: int, min_hit_rate: float, remember: int) -> None:
        self.caching = True
        self._window = window
        self._min = min_hit_rate
        self._remember = remember
        self._requests = self._hits = 0
        self._seen: OrderedDict[int, None] = OrderedDict()

    def bypassed(self, fingerprint: int) -> None:
        """A request served without the cache: remember its input, count a repeat."""
        seen = self._seen
        if fingerprint in seen:
            seen.move_to_end(fingerprint)
            self._hits += 1
        else:
            seen[fingerprint] = None
            if len(seen) > self._remember:
                seen.popitem(last=False)
        self._count()

    def looked_up(self, hit: bool) -> None:
        self._hits += hit
        self._count()

    def _count(self) -> None:
        self._requests += 1
        if self._requests < self._window:
            return
        caching = self._hits >= self._min * self._requests
        if caching != self.caching:
            self.caching = caching
            self._seen.clear()
            log.info("inference.result_cache_admission", caching=caching, hits=self._hits)
        self._requests = self._hits = 0


class Admissions:
    """One ``Admission`` per version, for at most ``max_versions`` (the oldest forgotten
    first: a forgotten version starts again with the cache on)."""

    WINDOW = 1000
    MIN_HIT_RATE = 0.01
    REMEMBER = 2048

    def __init__(
        self,
        *,
        window: int = WINDOW,
        min_hit_rate: float = MIN_HIT_RATE,
        remember: int = REMEMBER,
        max_versions: int = 1024,
    ) -> None:
        self._args = (window, min_hit_rate, remember)
        self._max = max_versions
        self._items: OrderedDict[str, Admission] = OrderedDict()

    def of(self, version_key: str) -> Admission:
        found = self._items.get(version_key)
        if found is None:
            found = self._items[version_key] = Admission(*self._args)
            if len(self._items) > self._max:
                self._items.popitem(last=False)
        return found

    def forget(self, version_key: str) -> None:
        self._items.pop(version_key, None)


class ResultCache(Protocol):
    async def get(self, version_id: str, digest: str) -> dict[str, Any] | None: ...
    async def put(self, version_id: str, digest: str, value: dict[str, Any]) -> None: ...
    async def invalidate(self, version_id: str) -> None: ...


class MemoryResultCache:
    def __init__(self, max_items: int, ttl_s: float) -> None:
        self._items: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()
        self._max = max_items
        self._ttl = ttl_s

    async def get(self, version_id: str, digest: str) -> dict[str, Any] | None:
        item = self._items.get((version_id, digest))
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[(version_id, digest)]
            return None
        self._items.move_to_end((version_id, digest))
        return item[1]

    async def put(self, version_id: str, digest: str, value: dict[str, Any]) -> None:
        self._items[(version_id, digest)] = (time.monotonic() + self._ttl, value)
        self._items.move_to_end((version_id, digest))
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    async def invalidate(self, version_id: str) -> None:
        for key in [k for k in self._items if k[0] == version_id]:
            del self._items[key]


class RedisResultCache:
    """A Redis failure is a cache miss, never an error for the caller. Lookups made in the
    same loop tick share one MGET; stores are written behind, pipelined, off the request, and
    answer lookups in this process until they are in Redis."""

    def __init__(self, redis: Redis, prefix: str, ttl_s: float) -> None:
        self._redis = redis
        self._prefix = f"{prefix}rc:"
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._down_until = 0.0
        self._lookups: Coalescer[str, bytes | str | None] = Coalescer(self._mget)
        self._writes: list[tuple[str, bytes]] = []
        self._unwritten: dict[str, bytes] = {}
        self._writing: set[asyncio.Task[None]] = set()

    async def get(self, version_id: str, digest: str) -> dict[str, Any] | None:
        if time.monotonic() < self._down_until:
            return None
        key = f"{self._prefix}{version_id}:{digest}"
        try:
            raw = self._unwritten.get(key) or await self._lookups(key)
        except Exception as exc:
            self._down(exc)
            return None
        return None if raw is None else dict(orjson.loads(raw))

    async def _mget(self, keys: list[str]) -> list[bytes | str | None]:
        return list(await self._redis.mget(keys))

    async def put(self, version_id: str, digest: str, value: dict[str, Any]) -> None:
        if time.monotonic() < self._down_until:
            return
        key, raw = f"{self._prefix}{version_id}:{digest}", orjson.dumps(value)
        self._writes.append((key, raw))
        self._unwritten[key] = raw
        if len(self._writes) == 1:
            asyncio.get_running_loop().call_soon(self._write_behind)

    def _write_behind(self) -> None:
        batch, self._writes = self._writes, []
        task = asyncio.get_running_loop().create_task(self._write(batch))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, batch: list[tuple[str, bytes]]) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, value in batch:
                pipe.set(key, value, px=self._ttl_ms)
            await pipe.execute()
        except Exception as exc:
            self._down(exc)
        finally:
            for key, _ in batch:
                self._unwritten.pop(key, None)

    async def invalidate(self, version_id: str) -> None:
        mine = f"{self._prefix}{version_id}:"
        self._writes = [(k, v) for k, v in self._writes if not k.startswith(mine)]
        for key in [k for k in self._unwritten if k.startswith(mine)]:
            del self._unwritten[key]
        try:
            keys = [
                k
                async for k in self._redis.scan_iter(
                    match=f"{self._prefix}{version_id}:*", count=1000
                )
            ]
            if keys:
                await self._redis.delete(*keys)
        except Exception as exc:
            self._down(exc)

    def _down(self, exc: Exception) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("inference.result_cache_unavailable", error=type(exc).__name__)
        self._down_until = time.monotonic() + 5.0


def create_result_cache(
    redis: Redis | None, prefix: str, ttl_s: float, max_items: int
) -> ResultCache:
    if redis is not None:
        return RedisResultCache(redis, prefix, ttl_s)
    return MemoryResultCache(max_items, ttl_s)
