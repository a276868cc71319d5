"""F01/F02: Redis killed or hung while requests flow. Nothing fails, the degradation is logged
once and shown in /health, and Redis enforces the limits again seconds after it returns."""

from __future__ import annotations

import asyncio
import time

from structlog.testing import capture_logs

RETRY_S = 1.0  # the breaker's half-open delay (5 s in production), shortened for the test
TIMEOUT_S = 0.1


async def _key_for(api, email, admin, per_minute):
    headers = await api.user(email)
    user_id = (await api.client.get("/api/v1/auth/me", headers=headers)).json()["id"]
    r = await api.client.patch(
        f"/api/v1/admin/users/{user_id}", json={"quota_per_minute": per_minute}, headers=admin
    )
    assert r.status_code == 200
    return user_id, {"X-API-Key": (await api.api_key(headers))["key"]}


async def _burst(api, path, key, n):
    """n requests one after the other: their statuses, and the slowest one's seconds."""
    statuses, slowest = [], 0.0
    for _ in range(n):
        start = time.perf_counter()
        r = await api.client.post(path, headers=key)
        slowest = max(slowest, time.perf_counter() - start)
        statuses.append(r.status_code)
    return statuses, slowest


async def _until_recovered(api, path, key, deadline_s=10.0):
    """Seconds until a request is served by Redis again (the limiter leaves degraded mode)."""
    start = time.monotonic()
    while api.ctx.limiter.degraded:
        assert time.monotonic() - start < deadline_s, "the limiter never went back to Redis"
        r = await api.client.post(path, headers=key)
        assert r.status_code in (200, 429)
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_redis_hung_then_killed_requests_keep_flowing(
    make_settings, make_api, limited, private_redis
):
    api = await make_api(make_settings(redis_url=private_redis.url, redis_timeout_s=TIMEOUT_S))
    api.ctx.limiter.retry_s = RETRY_S
    path = limited(api)
    admin = await api.user("root@example.com", role="admin")
    hung_user, hung_key = await _key_for(api, "hung@example.com", admin, per_minute=20)
    killed_user, killed_key = await _key_for(api, "killed@example.com", admin, per_minute=20)
    assert (await _burst(api, path, hung_key, 5))[0] == [200] * 5
    redis = private_redis.client()
    assert redis.llen(f"{api.ctx.settings.redis_prefix}quota:{hung_user}:minute") == 5
    redis.close()

    with capture_logs() as logs:
        # Hung (SIGSTOP): the first call waits for the socket timeout, the rest skip Redis.
        private_redis.pause()
        statuses, slowest = await _burst(api, path, hung_key, 25)
        assert set(statuses) <= {200, 429} and statuses.count(200) == 20  # 20 / 1 replica
        assert slowest < 4 * TIMEOUT_S + 0.5
        health = (await api.client.get("/health")).json()
        assert health["rate_limiter"]["degraded"] is True
        assert health["quotas"]["degraded"] is True and health["quotas"]["backend"] == "redis"
        private_redis.resume()
        assert await _until_recovered(api, path, hung_key) < RETRY_S + 2
        # Redis counts again: it kept the first 5 (and probes), so fewer than 15 remain.
        statuses, _ = await _burst(api, path, hung_key, 20)
        assert 0 < statuses.count(200) <= 15 and statuses[-1] == 429

        # Killed: connections refused at once; then a new, empty Redis on the same port.
        private_redis.kill()
        statuses, slowest = await _burst(api, path, killed_key, 25)
        assert set(statuses) <= {200, 429} and statuses.count(200) == 20
        assert slowest < 4 * TIMEOUT_S + 0.5
        assert (await api.client.get("/health")).json()["rate_limiter"]["degraded"] is True
        private_redis.start()
        assert await _until_recovered(api, path, killed_key) < RETRY_S + 2
        statuses, _ = await _burst(api, path, killed_key, 25)
        assert statuses.count(200) == 19 and statuses[-1] == 429  # 20 minus the probe

    events = [e["event"] for e in logs if e["event"].startswith("quotas.")]
    assert events == ["quotas.redis_unavailable", "quotas.redis_recovered"] * 2  # once each
    health = (await api.client.get("/health")).json()
    assert health["rate_limiter"]["degraded"] is False and health["quotas"]["fallback_calls"] > 0
