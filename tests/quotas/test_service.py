"""Quota rules called directly: tiers and overrides, batch rows, job slots."""

from __future__ import annotations

import uuid

import pytest

from inferx.errors import InvalidInput, TooManyRequests
from inferx.quotas.service import (
    BatchTooLarge,
    JobLimitReached,
    QuotaExceeded,
    check_job_slots,
    consume_batch_rows,
    consume_prediction,
    limits_for,
    may_start_job,
    tier_limits,
)
from inferx.tables import User


def _user(tier: str = "free", **overrides) -> User:
    """A user as the auth layer hands it over (a detached copy): no database involved."""
    return User(id=uuid.uuid4(), email=f"{uuid.uuid4().hex}@example.com", tier=tier, **overrides)


def test_tier_defaults_and_overrides(settings):
    assert tier_limits(settings, "free").per_day == 100
    assert tier_limits(settings, "free").per_minute == 10
    assert tier_limits(settings, "pro").per_day == 10_000
    assert tier_limits(settings, "pro").per_minute == 100
    enterprise = tier_limits(settings, "enterprise")
    assert enterprise.per_day is None and enterprise.per_minute == 1_000
    assert enterprise.batch_rows_per_day is None
    assert tier_limits(settings, "platinum") == tier_limits(settings, "free")  # unknown: least
    mixed = limits_for(settings, _user("enterprise", quota_per_day=50, quota_per_minute=None))
    assert mixed.per_day == 50 and mixed.per_minute == 1_000


def test_tier_limits_come_from_settings(make_settings):
    settings = make_settings(quota_free_per_minute=3, quota_free_per_day=0)
    limits = tier_limits(settings, "free")
    assert limits.per_minute == 3 and limits.per_day is None


async def test_batch_rows_count_against_a_daily_row_quota(api, clock):
    api.ctx.limiter.clock = clock
    user = _user("free")
    decision = await consume_batch_rows(api.ctx, user, 6_000)
    assert decision.allowed and decision.windows[0].used == 6_000
    assert decision.headers["RateLimit-Remaining"] == "4000"
    clock.advance(3_600)
    with pytest.raises(QuotaExceeded) as refused:
        await consume_batch_rows(api.ctx, user, 5_000)
    exc = refused.value
    assert isinstance(exc, TooManyRequests) and exc.extra["limit"] == "batch_rows"
    assert exc.extra["retry_after"] == 86_400 - 3_600 and exc.headers["Retry-After"] == "82800"
    assert (await consume_batch_rows(api.ctx, user, 4_000)).windows[0].used == 10_000
    with pytest.raises(BatchTooLarge) as too_large:
        await consume_batch_rows(api.ctx, user, 10_001)
    assert isinstance(too_large.value, InvalidInput) and too_large.value.status == 422
    clock.advance(86_400 - 3_600)  # the first job left the 24 hours
    assert (await consume_batch_rows(api.ctx, user, 6_000)).allowed
    generous = _user("free", quota_batch_rows_per_day=50_000)
    assert (await consume_batch_rows(api.ctx, generous, 40_000)).allowed
    unlimited = _user("enterprise")
    decision = await consume_batch_rows(api.ctx, unlimited, 10**8)
    assert decision.allowed and decision.headers == {}
    metrics = api.ctx.metrics.render().decode()
    assert 'inferx_rate_limited_total{limit="batch_rows"} 1.0' in metrics


async def test_job_slots_cap_the_queue_per_tier(api):
    free, pro = _user("free"), _user("pro")
    await check_job_slots(api.ctx, free, running=1, queued=9)
    with pytest.raises(JobLimitReached) as refused:
        await check_job_slots(api.ctx, free, running=0, queued=10)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "30"
    assert refused.value.extra["limit"] == "queued_jobs" and refused.value.extra["limit_max"] == 10
    await check_job_slots(api.ctx, pro, running=2, queued=99)
    with pytest.raises(JobLimitReached):
        await check_job_slots(api.ctx, pro, running=2, queued=100)
    assert may_start_job(api.ctx, free, running=0) and not may_start_job(api.ctx, free, running=1)
    assert may_start_job(api.ctx, pro, running=1) and not may_start_job(api.ctx, pro, running=2)


async def test_prediction_quota_is_per_user_and_names_the_limit(api):
    ada, bob = _user("free", quota_per_minute=2), _user("free", quota_per_minute=2)
    key = uuid.uuid4()
    for _ in range(2):
        await consume_prediction(api.ctx, ada, api_key_id=key)
    with pytest.raises(QuotaExceeded) as refused:
        await consume_prediction(api.ctx, ada, api_key_id=None)
    assert refused.value.extra["limit"] == "burst" and refused.value.extra["limit_max"] == 2
    assert refused.value.headers["RateLimit-Remaining"] == "0"
    decision = await consume_prediction(api.ctx, bob, api_key_id=None)
    assert decision.allowed and decision.binding.name == "burst"
    assert await api.ctx.limiter.tally(f"quota:{ada.id}:tally:{_today(api)}") == {str(key): 2}


def _today(api) -> str:
    from inferx.quotas.service import day_of

    return day_of(api.ctx.limiter.clock())
