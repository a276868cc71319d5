"""The quota on the real prediction routes: /api/v1/predict and the V2 infer share a bucket."""

from __future__ import annotations

ROW = [5.1, 3.5, 1.4, 0.2]


async def _upload(api, headers, model_files):
    path = model_files["iris.pkl"]
    r = await api.client.post(
        "/api/v1/models/upload",
        files={"file": (path.name, path.read_bytes())},
        data={"name": "iris"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_free_user_gets_ten_predictions_over_v1_and_v2_then_429(api, model_files):
    headers = await api.user("ds@example.com")
    key = {"X-API-Key": (await api.api_key(headers))["key"]}
    model_id = await _upload(api, headers, model_files)
    v1 = f"/api/v1/predict/{model_id}"
    v2 = f"/v2/models/{model_id}/infer"
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}
    calls = [(v1, {"input": [ROW]}), (v2, {"inputs": [tensor]})] * 5
    for i, (url, body) in enumerate(calls):
        r = await api.client.post(url, json=body, headers=key)
        assert r.status_code == 200, r.text
        assert r.headers["ratelimit-limit"] == "10" == r.headers["x-ratelimit-limit"]
        assert r.headers["ratelimit-remaining"] == str(9 - i) == r.headers["x-ratelimit-remaining"]
        assert 0 < int(r.headers["ratelimit-reset"]) <= 60
    # V2 errors are application/json with the protocol's "error" field; the rest is the same.
    media_types = ["application/problem+json", "application/json"]
    for (url, body), media in zip(calls[:2], media_types, strict=True):
        r = await api.client.post(url, json=body, headers=key)
        assert r.status_code == 429 and r.headers["content-type"] == media
        assert r.json()["limit"] == "burst" and r.json()["limit_max"] == 10
        assert r.headers["ratelimit-remaining"] == "0" and 1 <= int(r.headers["retry-after"]) <= 60
    usage = (await api.client.get("/api/v1/usage", headers=key)).json()
    assert usage["predictions_today"] == 10 and usage["api_keys"][0]["predictions_today"] == 10


async def test_101st_prediction_of_the_day_refused_pro_not_tier_change_next_request(
    api, model_files, clock
):
    api.ctx.limiter.clock = clock  # a day of requests in seconds: the clock moves, not time
    admin = await api.user("root@example.com", role="admin")
    free_headers = await api.user("free@example.com")
    pro_headers = await api.user("pro@example.com")
    ids = {}
    for name, headers in (("free", free_headers), ("pro", pro_headers)):
        ids[name] = (await api.client.get("/api/v1/auth/me", headers=headers)).json()["id"]
    r = await api.client.patch(
        f"/api/v1/admin/users/{ids['pro']}", json={"tier": "pro"}, headers=admin
    )
    assert r.status_code == 200
    model_id = await _upload(api, free_headers, model_files)
    r = await api.client.post(
        f"/api/v1/models/{model_id}/shares",
        json={"email": "pro@example.com", "permission": "use"},
        headers=free_headers,
    )
    assert r.status_code == 201, r.text
    keys = {
        "free": {"X-API-Key": (await api.api_key(free_headers))["key"]},
        "pro": {"X-API-Key": (await api.api_key(pro_headers))["key"]},
    }
    url = f"/api/v1/predict/{model_id}"

    async def predict(who):
        return await api.client.post(url, json={"input": [ROW]}, headers=keys[who])

    for i in range(100):
        if i and i % 10 == 0:
            clock.advance(61)  # past the burst window, within the day
        for who in ("free", "pro"):
            r = await predict(who)
            assert r.status_code == 200, (i, who, r.text)
    clock.advance(61)
    r = await predict("free")
    assert r.status_code == 429 and r.json()["limit"] == "daily"
    assert r.headers["ratelimit-limit"] == "100" and r.headers["ratelimit-remaining"] == "0"
    assert int(r.headers["retry-after"]) == 86_400 - 610
    assert (await predict("pro")).status_code == 200
    r = await api.client.patch(
        f"/api/v1/admin/users/{ids['free']}", json={"tier": "pro"}, headers=admin
    )
    assert r.status_code == 200
    r = await predict("free")  # the very next request sees the new tier
    assert r.status_code == 200 and r.headers["ratelimit-limit"] == "100"
