from __future__ import annotations

import json

import pytest


async def test_request_id_is_echoed_or_generated(api):
    r = await api.client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await api.client.get("/health/live", headers={"X-Request-ID": "bad id\twith junk" * 20})
    assert (
        r.headers["x-request-id"] != "bad id\twith junk" * 20
        and len(r.headers["x-request-id"]) == 32
    )


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/v1/nowhere", 404),
        ("delete", "/health/live", 405),
        ("put", "/api/v1/auth/login", 405),
    ],
)
async def test_framework_errors_are_problem_json(api, method, path, status):
    r = await getattr(api.client, method)(path)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (
        body["status"] == status
        and body["instance"] == path
        and body["request_id"] == r.headers["x-request-id"]
    )
    assert {"type", "title", "detail"} <= set(body)


async def test_unhandled_errors_are_500_without_internals(api):
    async def boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    api.app.add_api_route("/boom", boom)
    r = await api.client.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert "secret internal detail" not in r.text and "Traceback" not in r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]


async def test_oversized_bodies_are_413(make_settings, make_api):
    api = await make_api(make_settings(max_body_mb=0.01))
    big = json.dumps({"email": "a@example.com", "password": "x" * 20_000})
    r = await api.client.post(
        "/api/v1/auth/register", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"

    async def chunks():
        for _ in range(20):
            yield b"x" * 1024

    r = await api.client.post(
        "/api/v1/auth/register", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b'{"email": 1, "password": ["a"]}',
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe",
        b"null",
    ],
)
async def test_malformed_json_is_4xx(api, content):
    r = await api.client.post(
        "/api/v1/auth/register", content=content, headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500
    assert r.headers["content-type"] == "application/problem+json"


async def test_security_headers_and_no_store(api):
    r = await api.client.get("/api/v1/auth/me")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"


async def test_cors_never_reflects_a_foreign_origin_with_credentials(api):
    headers = await api.user("c@example.com")
    r = await api.client.get(
        "/api/v1/auth/me", headers={**headers, "Origin": "https://evil.example"}
    )
    assert r.headers.get("access-control-allow-credentials") != "true"
    assert r.headers.get("access-control-allow-origin") in (None, "*")


async def test_configured_origins_only(make_settings, make_api):
    api = await make_api(make_settings(cors_origins=["https://app.example"]))
    ok = await api.client.options(
        "/api/v1/auth/me",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    bad = await api.client.options(
        "/api/v1/auth/me",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in bad.headers


async def test_access_log_is_one_json_line_and_masks_secrets(api, capsys):
    await api.register("log@example.com", "a very secret pass")
    tokens = await api.login("log@example.com", "a very secret pass")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    key = await api.api_key(headers)
    await api.client.get(
        "/api/v1/auth/me",
        headers={"X-API-Key": key["key"], "User-Agent": 'x\r\n{"level":"CRITICAL"}'},
    )
    await api.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    out = capsys.readouterr().out
    for secret in (
        "a very secret pass",
        tokens["access_token"],
        tokens["refresh_token"],
        key["key"],
    ):
        assert secret not in out
    access = [json.loads(line) for line in out.splitlines() if '"http.request"' in line]
    assert access, out
    me = next(e for e in access if e["path"] == "/api/v1/auth/me")
    assert me["status"] == 200 and me["user_id"] and me["request_id"] and me["duration_ms"] >= 0
    assert me["route"] == "/api/v1/auth/me"


async def test_metrics_exposes_request_counters(api):
    await api.client.get("/health/live")
    text = (await api.client.get("/metrics")).text
    assert 'inferx_http_requests_total{method="GET",route="/health/live",status="200"}' in text
