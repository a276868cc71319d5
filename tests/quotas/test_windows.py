"""The moving windows behind quotas, in process and on Redis: the same tests for both."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from inferx.quotas.limiter import Limiter
from inferx.quotas.windows import Tally, Window


@pytest.fixture(params=["memory", "redis"])
async def limiter(request, clock):
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("shared_private_redis").url
    lim = Limiter(url, prefix=f"wtest:{uuid.uuid4().hex[:8]}:", clock=clock)
    yield lim
    await lim.close()


def minute(limit=10, key="u:minute"):
    return Window("burst", key, limit, 60)


def day(limit=100, key="u:day"):
    return Window("daily", key, limit, 86_400)


async def test_no_double_burst_at_the_window_edge(limiter, clock):
    """S34: `limit` hits at t=59.9 s then `limit` at t=60.1 s: the second burst is refused."""
    window = (minute(10),)
    clock.advance(59.9)
    first = [await limiter.acquire(window) for _ in range(10)]
    assert all(o.allowed for o in first) and first[-1].states[0].remaining == 0
    clock.advance(0.2)
    second = [await limiter.acquire(window) for _ in range(10)]
    assert not any(o.allowed for o in second)
    assert second[0].refused.retry_at == pytest.approx(first[0].states[0].oldest + 60)
    clock.advance(59.9)  # the first burst has left the window, all at once
    assert (await limiter.acquire(window)).allowed


async def test_a_refusal_counts_in_no_window(limiter, clock):
    windows = (minute(3), day(5))
    for _ in range(3):
        assert (await limiter.acquire(windows)).allowed
    refused = await limiter.acquire(windows)
    assert refused.refused.name == "burst"
    assert [s.used for s in refused.states] == [3, 3]  # the daily window did not count it
    clock.advance(61)
    for _ in range(2):
        assert (await limiter.acquire(windows)).allowed
    refused = await limiter.acquire(windows)
    assert refused.refused.name == "daily"
    assert [s.used for s in refused.states] == [2, 5]  # nor the burst window this one
    assert refused.refused.retry_at == pytest.approx(refused.states[1].oldest + 86_400)


async def test_a_lowered_limit_waits_for_enough_hits_to_leave(limiter, clock):
    for _ in range(6):
        assert (await limiter.acquire((minute(10),))).allowed
        clock.advance(1)
    outcome = await limiter.acquire((minute(3),))  # an admin lowered the limit
    assert not outcome.allowed and outcome.states[0].used == 6
    # 6 + 1 - 3 = 4 hits must leave: the 4th oldest, made at t0 + 3.
    assert outcome.refused.retry_at == pytest.approx(outcome.states[0].oldest + 3 + 60)


async def test_cost_larger_than_the_limit_can_never_fit(limiter):
    outcome = await limiter.acquire((minute(3),), cost=4)
    assert not outcome.allowed and math.isinf(outcome.refused.retry_at)


async def test_reading_counts_nothing_and_tallies_count_per_field(limiter):
    tally = Tally("u:tally", "key-a", 3600)
    await limiter.acquire((minute(),), tally=tally)
    await limiter.acquire((minute(),), tally=tally)
    await limiter.acquire((minute(),), tally=Tally("u:tally", "session", 3600))
    peek = await limiter.acquire((minute(),), cost=0)
    assert peek.allowed and peek.states[0].used == 3
    assert (await limiter.acquire((minute(),), cost=0)).states[0].used == 3
    assert await limiter.tally("u:tally") == {"key-a": 2, "session": 1}
    await limiter.clear_windows("u:minute")
    assert (await limiter.acquire((minute(),), cost=0)).states[0].used == 0


async def test_weighted_windows_free_up_job_by_job(limiter, clock):
    rows = Window("batch_rows", "u:rows", 100, 86_400)
    assert (await limiter.acquire_weighted(rows, cost=60)).allowed
    clock.advance(10)
    assert (await limiter.acquire_weighted(rows, cost=30)).states[0].used == 90
    refused = await limiter.acquire_weighted(rows, cost=20)
    assert not refused.allowed and refused.states[0].used == 90
    first = refused.states[0].oldest
    assert refused.refused.retry_at == pytest.approx(first + 86_400)  # the 60 must leave
    assert math.isinf((await limiter.acquire_weighted(rows, cost=101)).refused.retry_at)
    clock.advance(86_400 - 9)  # the first job left the window, the second has not
    outcome = await limiter.acquire_weighted(rows, cost=70)
    assert outcome.allowed and outcome.states[0].used == 100
    uncapped = Window("batch_rows", "v:rows", 0, 86_400)
    assert (await limiter.acquire_weighted(uncapped, cost=10**9)).states[0].used == 10**9


async def test_idle_buckets_are_forgotten_in_process(clock):
    lim = Limiter(clock=clock)
    await lim.acquire((minute(key="idle"),), tally=Tally("idle:tally", "k", 120))
    clock.advance(200)
    await lim.acquire((minute(key="other"),))
    assert "idle" not in lim._local._hits and "idle:tally" not in lim._local._tallies


async def test_redis_down_fails_open_with_a_shared_limit_then_comes_back(clock, private_redis):
    """F01: while Redis is away each replica allows limit / replicas; logged once; then back."""
    lim = Limiter(private_redis.url, prefix="breaker:", clock=clock, retry_s=0.2)
    window = (minute(10),)
    assert (await lim.acquire(window)).allowed and lim.status()["backend"] == "redis"
    private_redis.kill()
    with capture_logs() as logs:
        outcomes = [await lim.acquire(window, fallback_divisor=2) for _ in range(8)]
    assert [o.allowed for o in outcomes] == [True] * 5 + [False] * 3  # 10 / 2 replicas
    assert lim.degraded and lim.status()["degraded_since"] is not None
    assert [e["event"] for e in logs] == ["quotas.redis_unavailable"]
    private_redis.start()  # empty: it had no persistence
    await asyncio.sleep(0.3)
    with capture_logs() as logs:
        outcome = await lim.acquire(window)
    assert not lim.degraded and outcome.states[0].used == 1  # counted by Redis, not memory
    assert [e["event"] for e in logs] == ["quotas.redis_recovered"]
    await lim.close()


async def test_concurrent_checks_admit_exactly_the_limit(limiter):
    """Checks made together (one Redis pipeline) stay atomic one by one."""
    outcomes = await asyncio.gather(*(limiter.acquire((minute(10), day(12))) for _ in range(30)))
    assert sum(o.allowed for o in outcomes) == 10
    assert sorted(o.states[0].used for o in outcomes if o.allowed) == list(range(1, 11))
    assert all(o.refused and o.refused.name == "burst" for o in outcomes if not o.allowed)


async def test_scripts_flushed_from_redis_are_loaded_again(shared_private_redis, clock):
    lim = Limiter(shared_private_redis.url, prefix=f"wtest:{uuid.uuid4().hex[:8]}:", clock=clock)
    try:
        assert (await lim.acquire((minute(5),))).allowed
        admin = Redis.from_url(shared_private_redis.url)
        await admin.script_flush()
        await admin.aclose()
        outcome = await lim.acquire((minute(3),))
        assert outcome.allowed and outcome.states[0].used == 2 and not lim.degraded
    finally:
        await lim.close()


@pytest.fixture
async def replicas(shared_private_redis, clock):
    """Two limiters on one Redis: two replicas of the API."""
    prefix = f"wtest:{uuid.uuid4().hex[:8]}:"
    pair = [Limiter(shared_private_redis.url, prefix=prefix, clock=clock) for _ in range(2)]
    yield pair
    for lim in pair:
        await lim.close()


async def _redis_count(url, prefix, key):
    client = Redis.from_url(url)
    try:
        return await client.llen(prefix + key)
    finally:
        await client.aclose()


async def test_a_busy_user_is_served_from_a_lease(shared_private_redis, clock):
    prefix = f"wtest:{uuid.uuid4().hex[:8]}:"
    lim = Limiter(shared_private_redis.url, prefix=prefix, clock=clock)
    windows = (minute(1000), day(100_000))
    tally = Tally("u:tally", "key-1", 3600)
    try:
        used = [(await lim.acquire(windows, tally=tally)).states[0].used for _ in range(10)]
        assert used == list(range(1, 11))  # exact from the caller's side
        # The second check reserved 8 more: Redis has counted 10, the lease served 3..10.
        assert await _redis_count(shared_private_redis.url, prefix, "u:minute") == 10
        assert (await lim.tally("u:tally")) == {"key-1": 10}  # pending lease tallies included
        await lim._windows.flush()
        client = Redis.from_url(shared_private_redis.url)
        assert await client.hgetall(prefix + "u:tally") == {b"key-1": b"10"}
        await client.aclose()
        # Used up: the next lease is twice as big.
        await lim.acquire(windows, tally=tally)
        assert await _redis_count(shared_private_redis.url, prefix, "u:minute") == 11 + 16
    finally:
        await lim.close()
    # Closing gives back what the lease did not use.
    assert await _redis_count(shared_private_redis.url, prefix, "u:minute") == 11


async def test_leases_never_admit_more_than_the_limit_across_replicas(replicas, clock):
    a, b = replicas
    windows = (minute(300),)
    admitted = 0
    for _ in range(25):  # 250 checks, half on each replica: leases are granted
        outcomes = await asyncio.gather(*(lim.acquire(windows) for lim in (a, b) * 5))
        admitted += sum(o.allowed for o in outcomes)
    assert admitted == 250
    # A held lease is counted in Redis: the other replica cannot use those hits meanwhile.
    held = sum(s.lease.left for lim in replicas for s in lim._windows._leases.values() if s.lease)
    assert (await a.acquire(windows, cost=0)).states[0].used == 250 + held
    while (await b.acquire(windows)).allowed or (await a.acquire(windows)).allowed:
        admitted += 1
    assert admitted <= 300
    # The leases end and give back what they did not use: then exactly the limit is admitted.
    clock.advance(1.0)
    for lim in replicas:
        await lim._windows.flush()
    for lim in replicas:
        while (await lim.acquire(windows)).allowed:
            admitted += 1
    assert admitted == 300
    assert (await a.acquire(windows, cost=0)).states[0].used == 300


async def test_a_lease_ends_when_the_limits_change(shared_private_redis, clock):
    prefix = f"wtest:{uuid.uuid4().hex[:8]}:"
    lim = Limiter(shared_private_redis.url, prefix=prefix, clock=clock)
    try:
        for _ in range(3):
            assert (await lim.acquire((minute(1000),))).allowed
        assert await _redis_count(shared_private_redis.url, prefix, "u:minute") == 2 + 8
        # An admin lowers the limit: the next check goes to Redis and gives the lease back.
        outcome = await lim.acquire((minute(3),))
        assert not outcome.allowed and outcome.refused.name == "burst"
        assert await _redis_count(shared_private_redis.url, prefix, "u:minute") == 3
    finally:
        await lim.close()


async def test_no_lease_for_small_limits_or_occasional_callers(shared_private_redis, clock):
    prefix = f"wtest:{uuid.uuid4().hex[:8]}:"
    lim = Limiter(shared_private_redis.url, prefix=prefix, clock=clock)
    try:
        for _ in range(10):  # an eighth of what is left is under the minimum lease
            assert (await lim.acquire((minute(60), day(10_000)))).allowed
        assert await _redis_count(shared_private_redis.url, prefix, "u:minute") == 10
        for _ in range(5):  # one call a second: never a lease
            clock.advance(1.0)
            assert (await lim.acquire((minute(1000, key="v:minute"),))).allowed
        assert await _redis_count(shared_private_redis.url, prefix, "v:minute") == 5
    finally:
        await lim.close()


async def test_idle_users_lease_state_is_forgotten(shared_private_redis, clock):
    lim = Limiter(shared_private_redis.url, prefix=f"wtest:{uuid.uuid4().hex[:8]}:", clock=clock)
    try:
        for user in range(5):
            assert (await lim.acquire((minute(1000, key=f"u{user}:minute"),))).allowed
        assert len(lim._windows._leases) == 5
        clock.advance(61)
        await lim._windows.flush()
        assert lim._windows._leases == {}
    finally:
        await lim.close()
