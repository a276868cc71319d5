"""A small async TTL cache that can serve a stale value while the database is unreachable.

Used on the prediction path so that a warm request costs no database round trip, and keeps
working through a database outage; changes reach it through explicit invalidation (events).

When an entry's TTL runs out, one request reloads it; requests arriving meanwhile are answered
with the entry being replaced instead of each querying the database too (under concurrency that
was one query per request in flight, every TTL). A load that started before an invalidation
does not store what it read: it may predate the change.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

UNREACHABLE = (DBAPIError, OSError, TimeoutError)


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, stale_s: float, max_items: int = 50_000) -> None:
        self._ttl = ttl_s
        self._stale = stale_s
        self._max = max_items
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._reloading: set[K] = set()
        self._generation = 0  # bumped by every invalidation

    async def get_or_load(self, key: K, loader: Callable[[], Awaitable[V]]) -> V:
        now = time.monotonic()
        entry = self._items.get(key)
        if entry is not None:
            if now - entry[0] < self._ttl:
                return entry[1]
            if key in self._reloading and now - entry[0] < self._ttl + self._stale:
                return entry[1]  # another request is reloading it right now
            self._reloading.add(key)
        generation = self._generation
        try:
            value = await loader()
        except UNREACHABLE:
            if entry is not None and now - entry[0] < self._ttl + self._stale:
                return entry[1]
            raise
        finally:
            if entry is not None:
                self._reloading.discard(key)
        if generation == self._generation:
            self.put(key, value, now)
        return value

    def put(self, key: K, value: V, now: float | None = None) -> None:
        if self._ttl <= 0:
            return
        self._items[key] = (time.monotonic() if now is None else now, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def invalidate(self, key: K) -> None:
        self._generation += 1
        self._items.pop(key, None)

    def clear(self) -> None:
        self._generation += 1
        self._items.clear()
