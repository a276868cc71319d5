"""Quotas over HTTP: tiers, headers, the daily limit, admin changes, shared buckets, /usage."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime

import pytest

USAGE = "/api/v1/usage"


async def _user_id(api, headers) -> str:
    return str((await api.client.get("/api/v1/auth/me", headers=headers)).json()["id"])


async def _admin_patch(api, admin, user_id, **body):
    r = await api.client.patch(f"/api/v1/admin/users/{user_id}", json=body, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()


def _rate_headers(r) -> dict[str, int]:
    values = {k: int(r.headers[f"ratelimit-{k}"]) for k in ("limit", "remaining", "reset")}
    for k, v in values.items():
        assert int(r.headers[f"x-ratelimit-{k}"]) == v  # the X- twins say the same
    return values


async def test_free_user_gets_exactly_ten_then_429_with_headers(api, limited):
    path = limited(api)
    key = {"X-API-Key": (await api.api_key(await api.user("free@example.com")))["key"]}
    for i in range(10):
        r = await api.client.post(path, headers=key)
        assert r.status_code == 200, r.text
        h = _rate_headers(r)
        assert h["limit"] == 10 and h["remaining"] == 9 - i and 0 < h["reset"] <= 60
        assert r.headers["ratelimit-policy"] == "10;w=60, 100;w=86400"
    r = await api.client.post(path, headers=key)
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    h = _rate_headers(r)
    assert h["limit"] == 10 and h["remaining"] == 0
    assert 1 <= int(r.headers["retry-after"]) <= 60 and h["reset"] == int(r.headers["retry-after"])
    body = r.json()
    assert body["limit"] == "burst" and body["limit_max"] == 10 and body["window_s"] == 60
    assert body["retry_after"] == int(r.headers["retry-after"])
    assert datetime.fromisoformat(body["resets_at"]).tzinfo is not None
    assert body["status"] == 429 and body["request_id"] == r.headers["x-request-id"]
    usage = (await api.client.get(USAGE, headers=key)).json()
    # The refused request counted nowhere: not in the burst window, not in the daily one.
    assert usage["per_minute"]["used"] == 10 and usage["daily"]["used"] == 10
    metrics = (await api.client.get("/metrics")).text
    assert 'inferx_rate_limited_total{limit="burst"} 1.0' in metrics


async def test_the_101st_of_the_day_is_refused_and_a_pro_user_is_not(api, limited, clock):
    path = limited(api)
    api.ctx.limiter.clock = clock  # a day of requests in one second: the clock moves, not time
    admin = await api.user("root@example.com", role="admin")
    free = {"X-API-Key": (await api.api_key(await api.user("free@example.com")))["key"]}
    pro_headers = await api.user("pro@example.com")
    await _admin_patch(api, admin, await _user_id(api, pro_headers), tier="pro")
    pro = {"X-API-Key": (await api.api_key(pro_headers))["key"]}
    for i in range(100):
        if i and i % 10 == 0:
            clock.advance(61)  # past the burst window, still the same day
        for who in (free, pro):
            r = await api.client.post(path, headers=who)
            assert r.status_code == 200, (i, r.text)
    clock.advance(61)
    r = await api.client.post(path, headers=free)
    assert r.status_code == 429 and r.json()["limit"] == "daily"
    assert r.json()["limit_max"] == 100
    # The oldest of the 100 leaves 24 h after it was made, 10 minutes and 10 s ago.
    assert int(r.headers["retry-after"]) == 86_400 - 610
    assert _rate_headers(r)["limit"] == 100
    r = await api.client.post(path, headers=pro)
    assert r.status_code == 200 and _rate_headers(r) == {"limit": 100, "remaining": 99, "reset": 60}
    usage = (await api.client.get(USAGE, headers=free)).json()
    assert usage["per_minute"]["used"] == 0  # the daily refusal did not use the burst
    assert usage["daily"] | {"resets_at": None} == {
        "limit": 100,
        "used": 100,
        "remaining": 0,
        "window_s": 86_400,
        "resets_at": None,
        "source": "tier",
    }
    clock.advance(86_400 - 610)
    assert (await api.client.post(path, headers=free)).status_code == 200  # a day later


async def test_an_admin_change_takes_effect_on_the_next_request(api, limited):
    path = limited(api)
    admin = await api.user("root@example.com", role="admin")
    headers = await api.user("ada@example.com")
    user_id = await _user_id(api, headers)
    key = {"X-API-Key": (await api.api_key(headers))["key"]}
    for _ in range(10):
        assert (await api.client.post(path, headers=key)).status_code == 200
    assert (await api.client.post(path, headers=key)).status_code == 429
    await _admin_patch(api, admin, user_id, tier="pro")
    r = await api.client.post(path, headers=key)
    assert r.status_code == 200 and _rate_headers(r)["limit"] == 100
    await _admin_patch(api, admin, user_id, tier="free")
    assert (await api.client.post(path, headers=key)).status_code == 429
    shown = await _admin_patch(api, admin, user_id, quota_per_minute=20)
    assert shown["quota_per_minute"] == 20 and shown["quota_per_day"] is None
    r = await api.client.post(path, headers=key)
    assert r.status_code == 200 and _rate_headers(r) == {"limit": 20, "remaining": 8, "reset": 60}
    usage = (await api.client.get(USAGE, headers=key)).json()
    assert usage["per_minute"]["source"] == "override" and usage["daily"]["source"] == "tier"
    shown = await _admin_patch(api, admin, user_id, quota_per_minute=None, quota_per_day=5000)
    assert shown["quota_per_minute"] is None and shown["quota_per_day"] == 5000
    assert (await api.client.post(path, headers=key)).status_code == 429  # back to 10/minute
    listed = (await api.client.get("/api/v1/admin/users?email=ada", headers=admin)).json()
    assert listed["items"][0]["quota_per_day"] == 5000
    r = await api.client.patch(
        f"/api/v1/admin/users/{user_id}", json={"quota_per_minute": 0}, headers=admin
    )
    assert r.status_code == 422
    audit = (
        await api.client.get(
            "/api/v1/admin/audit-events?event=user.quota_per_minute_changed", headers=admin
        )
    ).json()
    assert audit["total"] == 2


async def test_many_keys_and_sessions_share_one_bucket(api, limited):
    """S32/S33: five keys and a session in parallel get 10 in total, not 10 each."""
    path = limited(api)
    session = await api.user("many@example.com")
    keys = [(await api.api_key(session, name=f"k{i}"))["key"] for i in range(5)]
    callers = [{"X-API-Key": k} for k in keys] + [session]
    plan = list(itertools.islice(itertools.cycle(callers), 36))
    results = await asyncio.gather(*(api.client.post(path, headers=h) for h in plan))
    assert sorted(r.status_code for r in results) == [200] * 10 + [429] * 26
    accepted = [h for h, r in zip(plan, results, strict=True) if r.status_code == 200]
    usage = (await api.client.get(USAGE, headers=session)).json()
    assert usage["predictions_today"] == 10 and usage["per_minute"]["remaining"] == 0
    per_key = {k["prefix"]: k["predictions_today"] for k in usage["api_keys"]}
    for key in keys:
        prefix = next(p for p in per_key if key.startswith(p))
        assert per_key[prefix] == sum(1 for h in accepted if h.get("X-API-Key") == key)
    assert usage["sessions_predictions_today"] == sum(1 for h in accepted if h is session)


async def test_usage_shows_limits_per_tier_and_batch_rows(api, limited):
    from inferx.quotas.service import consume_batch_rows
    from inferx.users import repository as users_repo

    path = limited(api)
    admin = await api.user("root@example.com", role="admin")
    headers = await api.user("big@example.com")
    user_id = await _user_id(api, headers)
    assert (await api.client.get(USAGE)).status_code == 401
    fresh = (await api.client.get(USAGE, headers=headers)).json()
    assert fresh["tier"] == "free" and fresh["predictions_today"] == 0 and fresh["api_keys"] == []
    assert fresh["daily"]["limit"] == 100 and fresh["daily"]["remaining"] == 100
    assert fresh["batch_rows"]["limit"] == 10_000 and fresh["batch_rows"]["used"] == 0
    assert fresh["jobs"] == {"max_running": 1, "max_queued": 10} and fresh["degraded"] is False
    await _admin_patch(api, admin, user_id, tier="enterprise")
    assert (await api.client.post(path, headers=headers)).status_code == 200
    async with api.ctx.sessions() as session:
        user = await users_repo.get(session, __import__("uuid").UUID(user_id))
    await consume_batch_rows(api.ctx, user, 12_345)
    usage = (await api.client.get(USAGE, headers=headers)).json()
    assert usage["tier"] == "enterprise" and usage["predictions_today"] == 1
    assert usage["daily"] == {
        "limit": None,
        "used": None,
        "remaining": None,
        "window_s": 86_400,
        "resets_at": None,
        "source": "tier",
    }
    assert usage["per_minute"]["limit"] == 1000 and usage["per_minute"]["remaining"] == 999
    assert usage["batch_rows"]["limit"] is None and usage["batch_rows"]["used"] == 12_345


@pytest.mark.parametrize("attempts", [3])
async def test_refresh_is_limited_per_address(make_settings, make_api, attempts):
    api = await make_api(make_settings(refresh_per_ip_per_minute=attempts))
    for _ in range(attempts):
        r = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": "rt_" + "x" * 40})
        assert r.status_code == 401
    r = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": "rt_" + "x" * 40})
    assert r.status_code == 429 and "retry-after" in r.headers
    assert 'inferx_rate_limited_total{limit="refresh"}' in (await api.client.get("/metrics")).text
