"""The TTL cache in front of the database on the prediction path."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import OperationalError

from inferx.kit.ttlcache import TtlCache


class Source:
    """A database stand-in: counts loads, each taking a moment."""

    def __init__(self) -> None:
        self.value = "v1"
        self.loads = 0
        self.fail = False

    async def load(self) -> str:
        self.loads += 1
        value = self.value  # read, then the round trip's latency
        await asyncio.sleep(0.01)
        if self.fail:
            raise OperationalError("select", {}, ConnectionError("down"))
        return value


async def test_an_expired_entry_is_reloaded_once_while_requests_keep_coming():
    cache: TtlCache[str, str] = TtlCache(ttl_s=0.05, stale_s=60)
    db = Source()
    assert await cache.get_or_load("k", db.load) == "v1"
    await asyncio.sleep(0.06)
    db.value = "v2"
    # 20 requests at once after the TTL: one reloads, the others get the entry it replaces.
    got = await asyncio.gather(*(cache.get_or_load("k", db.load) for _ in range(20)))
    assert db.loads == 2 and got.count("v2") == 1 and got.count("v1") == 19
    assert await cache.get_or_load("k", db.load) == "v2" and db.loads == 2


async def test_a_load_that_raced_an_invalidation_is_not_stored():
    cache: TtlCache[str, str] = TtlCache(ttl_s=10, stale_s=60)
    db = Source()
    loading = asyncio.create_task(cache.get_or_load("k", db.load))
    await asyncio.sleep(0)  # the load has read "v1" (or is about to)
    db.value = "v2"
    cache.invalidate("k")  # the change's event arrives while the load is in flight
    assert await loading == "v1"
    assert await cache.get_or_load("k", db.load) == "v2" and db.loads == 2


async def test_a_stale_entry_serves_while_the_database_is_down_then_not():
    cache: TtlCache[str, str] = TtlCache(ttl_s=0.02, stale_s=0.1)
    db = Source()
    await cache.get_or_load("k", db.load)
    db.fail = True
    await asyncio.sleep(0.03)
    assert await cache.get_or_load("k", db.load) == "v1"  # expired, database down: stale
    await asyncio.sleep(0.1)
    with pytest.raises(OperationalError):
        await cache.get_or_load("k", db.load)  # beyond the stale allowance
