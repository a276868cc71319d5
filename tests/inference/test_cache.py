from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from inferx.inference.cache import ModelCache


class Blob:
    def __init__(self, name: str, nbytes: int) -> None:
        self.name = name
        self.nbytes_estimate = nbytes


def load(cache: ModelCache[Blob], key: str, nbytes: int = 10) -> Blob:
    return cache.get_or_load(key, lambda: Blob(key, nbytes))


def test_hit_after_load() -> None:
    cache: ModelCache[Blob] = ModelCache(max_bytes=100, max_items=5)
    first = load(cache, "a")
    assert load(cache, "a") is first
    stats = cache.stats()
    assert (stats.loads, stats.hits, stats.misses, stats.items, stats.bytes) == (1, 1, 1, 1, 10)


def test_evicts_least_recently_used_by_bytes() -> None:
    cache: ModelCache[Blob] = ModelCache(max_bytes=100, max_items=10)
    load(cache, "a", 40)
    load(cache, "b", 40)
    load(cache, "a", 40)  # touch: b is now the oldest
    load(cache, "c", 40)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.nbytes == 80
    assert cache.stats().evictions == 1


def test_evicts_by_count() -> None:
    cache: ModelCache[Blob] = ModelCache(max_bytes=10_000, max_items=2)
    for key in "abc":
        load(cache, key)
    assert cache.stats(with_keys=True).keys == ["b", "c"]


def test_size_hint_makes_room_before_loading() -> None:
    cache: ModelCache[Blob] = ModelCache(max_bytes=100, max_items=10)
    load(cache, "a", 60)
    seen_during_load: list[bool] = []

    def loader() -> Blob:
        seen_during_load.append("a" in cache)
        return Blob("b", 60)

    cache.get_or_load("b", loader, size_hint=60)
    assert seen_during_load == [False]  # "a" was dropped before "b" was built


def test_a_model_larger_than_the_cache_is_still_served_alone() -> None:
    cache: ModelCache[Blob] = ModelCache(max_bytes=100, max_items=10)
    load(cache, "small", 10)
    big = load(cache, "big", 500)
    assert load(cache, "big") is big
    assert len(cache) == 1 and cache.nbytes == 500


def test_concurrent_first_requests_load_once() -> None:
    cache: ModelCache[Blob] = ModelCache(max_bytes=1000, max_items=5)
    calls = 0
    gate = threading.Event()

    def slow_loader() -> Blob:
        nonlocal calls
        calls += 1
        gate.wait(5)
        return Blob("m", 10)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get_or_load, "m", slow_loader) for _ in range(8)]
        time.sleep(0.05)
        gate.set()
        results = [f.result(5) for f in futures]
    assert calls == 1
    assert all(r is results[0] for r in results)


def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache: ModelCache[Blob] = ModelCache(max_bytes=1000, max_items=5)
    gate = threading.Event()

    def failing() -> Blob:
        gate.wait(5)
        raise ValueError("bad file")

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(cache.get_or_load, "m", failing) for _ in range(4)]
        time.sleep(0.05)
        gate.set()
        for future in futures:
            with pytest.raises(ValueError, match="bad file"):
                future.result(5)
    assert "m" not in cache
    assert load(cache, "m").name == "m"  # the next request tries again
    assert cache.stats().load_errors == 1


def test_evict_and_clear() -> None:
    cache: ModelCache[Blob] = ModelCache(max_bytes=1000, max_items=5)
    load(cache, "a")
    load(cache, "b")
    assert cache.evict("a") is True
    assert cache.evict("a") is False
    assert cache.get("a") is None and cache.get("b") is not None
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ModelCache(0, 1)
