from __future__ import annotations

import asyncio
import json
import os
import signal

import numpy as np
import pytest
from sklearn.datasets import load_iris

IRIS = load_iris().data


async def _upload(api, headers, path, name="iris", **fields):
    return await api.upload(headers, path, name, **fields)


async def _flush(api):
    await api.ctx.prediction_log.flush()


async def test_walkthrough_predict_cache_history_analytics(api, model_files):
    headers = await api.user("ds@example.com")
    key = {"X-API-Key": (await api.api_key(headers))["key"]}
    model = await _upload(api, headers, model_files["iris.pkl"])
    url = f"/api/v1/predict/{model['id']}"
    r = await api.client.post(url, json={"input": [list(IRIS[0]), list(IRIS[100])]}, headers=key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["prediction"] == [0, 2]
        and body["cache_hit"] is False
        and r.headers["x-cache"] == "MISS"
    )
    assert (
        body["model_version"] == 1
        and body["model_id"] == model["id"]
        and body["classes"] == [0, 1, 2]
    )
    assert len(body["probabilities"]) == 2 and abs(sum(body["probabilities"][0]) - 1) < 1e-6
    assert body["request_id"] == r.headers["x-request-id"]
    again = await api.client.post(
        url, json={"input": [list(IRIS[0]), list(IRIS[100])]}, headers=key
    )
    assert again.json()["cache_hit"] is True and again.headers["x-cache"] == "HIT"
    assert again.json()["prediction"] == [0, 2]
    other = await api.client.post(url, json={"input": [list(IRIS[50])]}, headers=key)
    assert other.json()["cache_hit"] is False and other.json()["prediction"] == [1]
    await _flush(api)
    history = (await api.client.get("/api/v1/predictions", headers=headers)).json()
    assert history["total"] == 3 and {p["cache_hit"] for p in history["items"]} == {True, False}
    assert all(p["inputs"] is None for p in history["items"])  # payloads are not kept by default
    stats = (
        await api.client.get(f"/api/v1/models/{model['id']}/analytics", headers=headers)
    ).json()
    assert (
        stats["total_predictions"] == 3
        and stats["success_rate"] == 1.0
        and stats["predictions_today"] == 3
    )
    assert (
        stats["p50_inference_time_ms"] is not None
        and stats["min_inference_time_ms"] <= stats["max_inference_time_ms"]
    )
    assert stats["versions"][0]["version"] == 1 and len(stats["daily"]) == 1
    metrics = (await api.client.get("/metrics")).text
    assert (
        "inferx_predictions_total" in metrics
        and 'inferx_result_cache_total{outcome="hit"} 1.0' in metrics
    )


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"input": [[1, 2, 3]]}, "input[0]: expected 4 features, got 3"),
        ({"input": [[1, 2, 3, 4], [1, 2, "x", 4]]}, "input[1][2]: expected a number, got str"),
        ({"input": [[1, 2, None, 4]]}, "input[0][2]: expected a number, got null"),
        ({"input": []}, "non-empty"),
        ({"input": [[1, 2, 3, 4]] * 1001}, "at most 1000 per request"),
        ({"input": [[1, 2, 3, 4]], "extra": 1}, "Unknown field"),
        ({"input": [{"a": 1}]}, "no named features"),
        ({"inputs": [[1, 2, 3, 4]]}, "input"),
    ],
)
async def test_bad_input_is_422_naming_row_and_field(api, model_files, body, needle):
    headers = await api.user("ds@example.com")
    model = await _upload(api, headers, model_files["iris.pkl"])
    r = await api.client.post(f"/api/v1/predict/{model['id']}", json=body, headers=headers)
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]


async def test_nan_and_malformed_json_are_422(api, model_files):
    headers = await api.user("ds@example.com")
    model = await _upload(api, headers, model_files["iris.pkl"])
    for content in (
        b'{"input": [[NaN, 1, 2, 3]]}',
        b'{"input": [[Infinity, 1, 2, 3]]}',
        b"{nope",
        b"[" * 50000,
    ):
        r = await api.client.post(
            f"/api/v1/predict/{model['id']}",
            content=content,
            headers={**headers, "content-type": "application/json"},
        )
        assert r.status_code == 422, (content[:20], r.text)


async def test_named_features_from_the_upload_schema(api, model_files):
    headers = await api.user("ds@example.com")
    schema = {"features": [{"name": n, "dtype": "float"} for n in ("sl", "sw", "pl", "pw")]}
    model = await _upload(api, headers, model_files["iris.onnx"], input_schema=json.dumps(schema))
    url = f"/api/v1/predict/{model['id']}"
    row = dict(zip(("sl", "sw", "pl", "pw"), IRIS[100].tolist(), strict=True))
    r = await api.client.post(url, json={"input": [row]}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["prediction"] == [2]
    r = await api.client.post(url, json={"input": [{"sl": 1, "sw": 2, "pl": 3}]}, headers=headers)
    assert r.status_code == 422 and "missing feature(s) pw" in r.json()["detail"]
    r = await api.client.post(url, json={"input": [{**row, "zz": 1}]}, headers=headers)
    assert r.status_code == 422 and "unknown feature(s) zz" in r.json()["detail"]


async def test_version_selection_and_cache_invalidation(api, model_files):
    headers = await api.user("ds@example.com")
    model = await _upload(api, headers, model_files["iris.pkl"])
    await _upload(api, headers, model_files["iris.joblib"])
    url = f"/api/v1/predict/{model['id']}"
    row = {"input": [list(IRIS[3])]}
    assert (await api.client.post(url, json=row, headers=headers)).json()["model_version"] == 2
    assert (await api.client.post(url, params={"version": 1}, json=row, headers=headers)).json()[
        "cache_hit"
    ] is False
    assert (await api.client.post(url, params={"version": 1}, json=row, headers=headers)).json()[
        "cache_hit"
    ] is True
    r = await api.client.patch(
        f"/api/v1/models/{model['id']}/versions/1", json={"status": "deprecated"}, headers=headers
    )
    assert r.status_code == 200
    r = await api.client.post(url, params={"version": 1}, json=row, headers=headers)
    assert r.status_code == 200 and r.json()["cache_hit"] is False  # the status change evicted it
    await api.client.patch(
        f"/api/v1/models/{model['id']}/versions/1", json={"status": "archived"}, headers=headers
    )
    assert (
        await api.client.post(url, params={"version": 1}, json=row, headers=headers)
    ).status_code == 409
    assert (
        await api.client.post(url, params={"version": 7}, json=row, headers=headers)
    ).status_code == 404
    await api.client.patch(
        f"/api/v1/models/{model['id']}/versions/2", json={"status": "deprecated"}, headers=headers
    )
    assert (await api.client.post(url, json=row, headers=headers)).status_code == 409
    assert (
        await api.client.post(url, params={"version": 2}, json=row, headers=headers)
    ).status_code == 200


async def test_permissions_on_predict(api, model_files):
    alice = await api.user("alice@example.com")
    bob = await api.user("bob@example.com")
    bob_key = {"X-API-Key": (await api.api_key(bob))["key"]}
    model = await _upload(api, alice, model_files["iris.pkl"])
    url = f"/api/v1/predict/{model['id']}"
    row = {"input": [list(IRIS[0])]}
    assert (await api.client.post(url, json=row, headers=bob_key)).status_code == 404
    shares = f"/api/v1/models/{model['id']}/shares"
    share = (
        await api.client.post(
            shares, json={"email": "bob@example.com", "permission": "view"}, headers=alice
        )
    ).json()
    assert (await api.client.post(url, json=row, headers=bob_key)).status_code == 403
    await api.client.post(
        shares, json={"email": "bob@example.com", "permission": "use"}, headers=alice
    )
    assert (await api.client.post(url, json=row, headers=bob_key)).status_code == 200
    await api.client.delete(f"{shares}/{share['id']}", headers=alice)
    assert (await api.client.post(url, json=row, headers=bob_key)).status_code == 404
    await api.client.delete(f"/api/v1/models/{model['id']}", headers=alice)
    assert (await api.client.post(url, json=row, headers=alice)).status_code == 404
    # A revoked key stops working at once (the auth cache is invalidated by the event).
    key = await api.api_key(alice)
    assert (
        await api.client.get("/api/v1/auth/me", headers={"X-API-Key": key["key"]})
    ).status_code == 200
    await api.client.delete(f"/api/v1/api-keys/{key['id']}", headers=alice)
    assert (
        await api.client.get("/api/v1/auth/me", headers={"X-API-Key": key["key"]})
    ).status_code == 401


async def _broken_model(api, headers, model_files, tmp_path):
    """A model that passed validation once but fails at predict time (stored as-is)."""
    import pickle

    from sklearn.linear_model import LogisticRegression

    model = await _upload(api, headers, model_files["iris.pkl"], name="broken")
    lr = LogisticRegression(max_iter=500).fit(IRIS, load_iris().target)
    lr.coef_ = np.zeros((3, 7))  # n_features_in_ says 4: every predict raises
    storage_root = api.ctx.settings.data_dir / "models"
    stored = next(storage_root.rglob("model.pkl"))
    stored.write_bytes(pickle.dumps(lr))
    from sqlalchemy import update

    from inferx.registry.storage import file_sha256
    from inferx.tables import ModelVersion

    async with api.ctx.sessions() as session, session.begin():
        await session.execute(update(ModelVersion).values(sha256=file_sha256(stored)))
    return model


async def test_failing_model_is_500_for_that_request_and_logged(api, model_files, tmp_path):
    headers = await api.user("ds@example.com")
    broken = await _broken_model(api, headers, model_files, tmp_path)
    good = await _upload(api, headers, model_files["iris.onnx"], name="good")
    r = await api.client.post(
        f"/api/v1/predict/{broken['id']}", json={"input": [list(IRIS[0])]}, headers=headers
    )
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    r = await api.client.post(
        f"/api/v1/predict/{good['id']}", json={"input": [list(IRIS[0])]}, headers=headers
    )
    assert r.status_code == 200
    await _flush(api)
    failed = (
        await api.client.get("/api/v1/predictions", params={"status": "error"}, headers=headers)
    ).json()
    assert (
        failed["total"] == 1
        and failed["items"][0]["status_code"] == 500
        and failed["items"][0]["error"]
    )
    stats = (
        await api.client.get(f"/api/v1/models/{broken['id']}/analytics", headers=headers)
    ).json()
    assert stats["success_rate"] == 0.0 and stats["recent_errors"][0]["status_code"] == 500


async def test_killed_worker_is_503_then_replaced(api, model_files):
    headers = await api.user("ds@example.com")
    model = await _upload(api, headers, model_files["rf.joblib"], name="rf")
    url = f"/api/v1/predict/{model['id']}"
    rows = np.random.default_rng(1).normal(size=(1000, 20)).tolist()
    assert (
        await api.client.post(url, json={"input": rows[:1]}, headers=headers)
    ).status_code == 200
    pid = api.ctx.inference.pool.stats()[0].pid

    async def kill_soon():
        await asyncio.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    results = await asyncio.gather(
        *[
            api.client.post(url, json={"input": rows[i : i + 1000]}, headers=headers)
            for i in range(0, 1, 1)
        ],
        kill_soon(),
    )
    assert results[0].status_code in (200, 503)
    for _ in range(100):
        r = await api.client.post(url, json={"input": rows[5:6]}, headers=headers)
        if r.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert r.status_code == 200
    assert api.ctx.inference.pool.stats()[0].pid != pid
    health = (await api.client.get("/health")).json()
    assert health["inference"]["workers"][0]["restarts"] >= 1


async def test_slow_model_times_out_with_504(make_settings, make_api, model_files):
    api = await make_api(make_settings(predict_timeout_s=0.002, result_cache_ttl_s=0))
    headers = await api.user("ds@example.com")
    model = await _upload(api, headers, model_files["rf.joblib"], name="rf")
    rows = np.random.default_rng(2).normal(size=(1000, 20)).tolist()
    statuses = set()
    for _ in range(3):
        r = await api.client.post(
            f"/api/v1/predict/{model['id']}", json={"input": rows}, headers=headers
        )
        statuses.add(r.status_code)
    assert 504 in statuses


async def test_warm_predictions_survive_a_database_outage(api, model_files):
    headers = await api.user("ds@example.com")
    key = {"X-API-Key": (await api.api_key(headers))["key"]}
    model = await _upload(api, headers, model_files["iris.pkl"])
    url = f"/api/v1/predict/{model['id']}"
    assert (
        await api.client.post(url, json={"input": [list(IRIS[0])]}, headers=key)
    ).status_code == 200
    from inferx.db import create_engine, create_sessionmaker

    if api.ctx.settings.is_sqlite:
        dead = create_engine("sqlite+aiosqlite:////nonexistent-dir/x.db")
    else:
        dead = create_engine(str(api.ctx.engine.url.set(port=1)))
    live_engine, live_sessions = api.ctx.engine, api.ctx.sessions
    api.ctx.engine, api.ctx.sessions = dead, create_sessionmaker(dead)
    api.ctx.prediction_log._sessions = api.ctx.sessions
    api.ctx.auth_cache.keys._ttl = api.ctx.targets.models._ttl = 0.0  # force a refresh attempt
    try:
        for i in range(5):
            r = await api.client.post(url, json={"input": [list(IRIS[i])]}, headers=key)
            assert r.status_code == 200, r.text
        assert (await api.client.get("/health/ready")).status_code == 503
    finally:
        await dead.dispose()
        api.ctx.engine, api.ctx.sessions = live_engine, live_sessions
        api.ctx.prediction_log._sessions = live_sessions
    await _flush(api)
    history = (await api.client.get("/api/v1/predictions", headers=headers)).json()
    assert history["total"] == 6  # buffered through the outage, written afterwards


async def test_metrics_show_model_cache_and_batching(api, model_files):
    headers = await api.user("ds@example.com")
    model = await _upload(api, headers, model_files["iris.pkl"])
    r = await api.client.post(
        f"/api/v1/predict/{model['id']}", json={"input": [list(IRIS[7])]}, headers=headers
    )
    assert r.status_code == 200
    text = (await api.client.get("/metrics")).text
    bytes_line = next(
        line for line in text.splitlines() if line.startswith("inferx_model_cache_bytes{")
    )
    assert float(bytes_line.split()[-1]) > 0
    assert 'inferx_model_cache_models{worker="0"} 1.0' in text
    assert "inferx_batch_rows_bucket" in text and "inferx_inference_duration_seconds_count" in text
    assert "inferx_prediction_log_dropped_total" in text
