from __future__ import annotations

import asyncio


async def test_wrong_passwords_lock_the_account_then_the_window_passes(make_settings, make_api):
    api = await make_api(make_settings(login_max_failures_per_account=3, login_lock_window_s=2))
    await api.register("victim@example.com")
    wrong = {"email": "victim@example.com", "password": "not-the-password"}
    for _ in range(3):
        assert (await api.client.post("/api/v1/auth/login", json=wrong)).status_code == 401
    r = await api.client.post("/api/v1/auth/login", json=wrong)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["content-type"] == "application/problem+json"
    # Even the right password waits for the window: a lock that yields to guessing is no lock.
    right = {"email": "victim@example.com", "password": "correct horse battery"}
    assert (await api.client.post("/api/v1/auth/login", json=right)).status_code == 429
    await asyncio.sleep(2.2)
    assert (await api.client.post("/api/v1/auth/login", json=right)).status_code == 200
    metrics = (await api.client.get("/metrics")).text
    assert 'inferx_rate_limited_total{limit="login"}' in metrics


async def test_many_accounts_from_one_ip_are_throttled(make_settings, make_api):
    api = await make_api(make_settings(login_max_failures_per_ip=4, login_lock_window_s=60))
    for i in range(4):
        r = await api.client.post(
            "/api/v1/auth/login", json={"email": f"u{i}@example.com", "password": "whatever1"}
        )
        assert r.status_code == 401
    r = await api.client.post(
        "/api/v1/auth/login", json={"email": "u9@example.com", "password": "whatever1"}
    )
    assert r.status_code == 429


async def test_registration_is_limited_per_ip(make_settings, make_api):
    api = await make_api(make_settings(register_per_ip_per_hour=2))
    await api.register("r1@example.com")
    await api.register("r2@example.com")
    r = await api.client.post(
        "/api/v1/auth/register", json={"email": "r3@example.com", "password": "longenough"}
    )
    assert r.status_code == 429 and "retry-after" in r.headers
