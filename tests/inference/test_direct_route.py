"""POST /api/v1/predict/{id} is served past the framework (inference.direct): the same
contract as the FastAPI route it stands in for, which still serves browser (CORS) requests."""

from __future__ import annotations

import json

import pytest
from sklearn.datasets import load_iris

from inferx.inference import direct as direct_module

ROW = load_iris().data[0].tolist()


@pytest.fixture
async def iris(api, model_files):
    headers = await api.user("direct@example.com")
    model = await api.upload(headers, model_files["iris.pkl"])
    key = {"X-API-Key": (await api.api_key(headers))["key"]}
    return f"/api/v1/predict/{model['id']}", key


async def test_direct_and_framework_routes_answer_alike(api, iris, monkeypatch):
    url, key = iris
    served = []

    async def counting(scope, receive, send):
        served.append(scope["path"])
        await direct_module.predict(scope, receive, send)

    monkeypatch.setattr(api.app.hot, "app", counting)
    direct = await api.client.post(url, json={"input": [ROW]}, headers=key)
    origin = {**key, "Origin": "http://localhost:3000"}
    framework = await api.client.post(url + "?version=1", json={"input": [ROW]}, headers=origin)
    assert served == [url]  # the browser request took the framework's way
    assert direct.status_code == framework.status_code == 200, (direct.text, framework.text)
    a, b = direct.json(), framework.json()
    assert a.pop("request_id") != b.pop("request_id")
    assert a.pop("cache_hit") is False and b.pop("cache_hit") is True
    assert a.pop("inference_time_ms") >= 0 and b.pop("inference_time_ms") >= 0
    assert a == b
    for r in (direct, framework):
        assert r.headers["content-type"] == "application/json"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-request-id"] and r.headers["ratelimit-limit"]
    assert "access-control-allow-origin" in framework.headers  # CORS applied on that way


@pytest.mark.parametrize(
    ("suffix", "loc", "kind"),
    [
        ("?version=abc", ["query", "version"], "int_parsing"),
        ("?version=0", ["query", "version"], "greater_than_equal"),
        ("?version=1000001", ["query", "version"], "less_than_equal"),
        ("?version=", ["query", "version"], "int_parsing"),
    ],
)
async def test_bad_version_is_the_framework_422(api, iris, suffix, loc, kind):
    url, key = iris
    r = await api.client.post(url + suffix, json={"input": [ROW]}, headers=key)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["errors"][0]["loc"] == loc and problem["errors"][0]["type"] == kind
    assert problem["detail"].startswith("query.version: ") and problem["request_id"]


async def test_bad_model_id_wrong_method_and_extra_path(api, iris):
    _, key = iris
    bad = await api.client.post("/api/v1/predict/not-a-uuid", json={"input": [ROW]}, headers=key)
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["path", "model_id"]
    url, _ = iris
    assert (await api.client.get(url, headers=key)).status_code == 405
    extra = await api.client.post(url + "/more", json={"input": [ROW]}, headers=key)
    assert extra.status_code == 404
    assert (await api.client.post("/api/v1/predict/", headers=key)).status_code in (404, 405)


async def test_unknown_model_and_missing_key_are_problems(api, iris):
    url, key = iris
    unknown = "/api/v1/predict/00000000-0000-4000-8000-000000000000"
    r = await api.client.post(unknown, json={"input": [ROW]}, headers=key)
    assert r.status_code == 404 and r.json()["instance"] == unknown
    r = await api.client.post(url, json={"input": [ROW]})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"] == "application/problem+json"


async def test_direct_route_is_counted_and_logged_under_its_template(api, iris, capsys):
    url, key = iris
    assert (await api.client.post(url, json={"input": [ROW]}, headers=key)).status_code == 200
    metrics = (await api.client.get("/metrics")).text
    label = 'method="POST",route="/api/v1/predict/{model_id}",status="200"'
    assert f"inferx_http_requests_total{{{label}}} 1.0" in metrics
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if "http.req" in line
    ]
    mine = [e for e in lines if e["path"] == url]
    assert mine and mine[-1]["route"] == "/api/v1/predict/{model_id}"
    assert mine[-1]["status"] == 200 and mine[-1]["user_id"] and key["X-API-Key"] not in str(lines)


async def test_oversized_body_is_413(api, iris):
    url, key = iris
    big = b'{"input": [' + b"[1,2,3,4]," * 2_000_000 + b"[1,2,3,4]]}"
    r = await api.client.post(url, content=big, headers={**key, "content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
