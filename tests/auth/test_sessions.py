from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy import select

from inferx.tables import AuditEvent


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _tokens(api, email="s@example.com"):
    await api.register(email)
    return await api.login(email)


def _claims(api, **overrides):
    now = datetime.now(UTC)
    claims = {
        "sub": str(uuid.uuid4()),
        "iss": "inferx",
        "aud": "inferx-api",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "fam": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def test_forged_and_malformed_access_tokens_are_401(api):
    tokens = await _tokens(api)
    me = (await api.client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).json()
    key = api.ctx.settings.signing_key
    good = _claims(api, sub=me["id"])
    header, payload, _sig = tokens["access_token"].split(".")
    cases = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg None": f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{payload}.",
        "wrong key": jwt.encode(good, "x" * 48, algorithm="HS256"),
        "HS512": jwt.encode(good, key, algorithm="HS512"),
        "expired": jwt.encode(
            _claims(api, sub=me["id"], exp=datetime.now(UTC) - timedelta(minutes=5)), key
        ),
        "no exp": jwt.encode(_claims(api, sub=me["id"], exp=None), key),
        "future nbf": jwt.encode(
            _claims(api, sub=me["id"], nbf=datetime.now(UTC) + timedelta(minutes=10)), key
        ),
        "wrong iss": jwt.encode(_claims(api, sub=me["id"], iss="evil"), key),
        "wrong aud": jwt.encode(_claims(api, sub=me["id"], aud="other"), key),
        "refresh typ": jwt.encode(_claims(api, sub=me["id"], typ="refresh"), key),
        "unknown user": jwt.encode(_claims(api), key),
        "tampered": f"{header}.{_b64({**json.loads(base64.urlsafe_b64decode(payload + '==')), 'sub': str(uuid.uuid4())})}.{_sig}",
        "garbage": "not.a.jwt",
        "refresh token as access": tokens["refresh_token"],
        "kid traversal": jwt.encode(
            good, key, headers={"kid": "../../etc/passwd", "jku": "http://127.0.0.1:1/"}
        )
        + "x",
        "huge": "a" * 10000,
    }
    for name, token in cases.items():
        r = await api.client.get("/api/v1/auth/me", headers=bearer(token))
        assert r.status_code == 401, name
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"] == "application/problem+json"
    # The honest token still works.
    assert (
        await api.client.get("/api/v1/auth/me", headers=bearer(jwt.encode(good, key)))
    ).status_code == 200


async def test_no_credentials_is_401(api):
    r = await api.client.get("/api/v1/auth/me")
    assert r.status_code == 401
    assert r.json()["request_id"] == r.headers["x-request-id"]


async def test_refresh_rotates_and_reuse_revokes_the_family(api):
    t1 = await _tokens(api)
    r = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": t1["refresh_token"]})
    assert r.status_code == 200
    t2 = r.json()
    assert t2["refresh_token"] != t1["refresh_token"]
    assert (
        await api.client.get("/api/v1/auth/me", headers=bearer(t2["access_token"]))
    ).status_code == 200
    # Replaying the spent token: refused, and the whole family with it.
    r = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": t1["refresh_token"]})
    assert r.status_code == 401
    r = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": t2["refresh_token"]})
    assert r.status_code == 401
    assert (
        await api.client.get("/api/v1/auth/me", headers=bearer(t2["access_token"]))
    ).status_code == 401
    assert (
        await api.client.get("/api/v1/auth/me", headers=bearer(t1["access_token"]))
    ).status_code == 401
    async with api.ctx.sessions() as session:
        events = (await session.execute(select(AuditEvent.event))).scalars().all()
    assert "refresh_token.reused" in events
    # Another login is a new family and works.
    t3 = await api.login("s@example.com")
    assert (
        await api.client.get("/api/v1/auth/me", headers=bearer(t3["access_token"]))
    ).status_code == 200


async def test_concurrent_refresh_has_exactly_one_winner(api):
    t1 = await _tokens(api)
    results = await asyncio.gather(
        *[
            api.client.post("/api/v1/auth/refresh", json={"refresh_token": t1["refresh_token"]})
            for _ in range(5)
        ]
    )
    assert sorted(r.status_code for r in results).count(200) == 1


@pytest.mark.parametrize(
    "body", [{"refresh_token": "rt_unknown"}, {"refresh_token": ""}, {}, {"token": "x"}]
)
async def test_refresh_bad_bodies(api, body):
    r = await api.client.post("/api/v1/auth/refresh", json=body)
    assert r.status_code in (401, 422)


async def test_logout_kills_access_token_and_refresh_family(api):
    t = await _tokens(api)
    other = await api.login("s@example.com")  # a second session on another device
    r = await api.client.post("/api/v1/auth/logout", headers=bearer(t["access_token"]))
    assert r.status_code == 204
    assert (
        await api.client.get("/api/v1/auth/me", headers=bearer(t["access_token"]))
    ).status_code == 401
    r = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": t["refresh_token"]})
    assert r.status_code == 401
    # Only this session ended.
    assert (
        await api.client.get("/api/v1/auth/me", headers=bearer(other["access_token"]))
    ).status_code == 200


async def test_password_change_revokes_other_sessions(api):
    here = await _tokens(api)
    elsewhere = await api.login("s@example.com")
    r = await api.client.post(
        "/api/v1/auth/password",
        json={"current_password": "wrong-password", "new_password": "a new secret 123"},
        headers=bearer(here["access_token"]),
    )
    assert r.status_code == 403
    r = await api.client.post(
        "/api/v1/auth/password",
        json={"current_password": "correct horse battery", "new_password": "a new secret 123"},
        headers=bearer(here["access_token"]),
    )
    assert r.status_code == 204
    assert (
        await api.client.get("/api/v1/auth/me", headers=bearer(here["access_token"]))
    ).status_code == 200
    assert (
        await api.client.get("/api/v1/auth/me", headers=bearer(elsewhere["access_token"]))
    ).status_code == 401
    r = await api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": elsewhere["refresh_token"]}
    )
    assert r.status_code == 401
    r = await api.client.post(
        "/api/v1/auth/login", json={"email": "s@example.com", "password": "correct horse battery"}
    )
    assert r.status_code == 401
    await api.login("s@example.com", "a new secret 123")


async def test_logout_with_api_key_is_refused(api):
    headers = await api.user("k@example.com")
    key = await api.api_key(headers)
    r = await api.client.post("/api/v1/auth/logout", headers={"X-API-Key": key["key"]})
    assert r.status_code == 403
