from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from inferx.tables import AuditEvent, User


async def test_register_normalises_email_and_hashes_with_argon2id(api):
    r = await api.client.post(
        "/api/v1/auth/register", json={"email": "  Ada.Lovelace@Example.COM ", "password": "x" * 8}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["email"] == "ada.lovelace@example.com"
    assert body["role"] == "user" and body["tier"] == "free" and body["is_active"] is True
    assert set(body) == {"id", "email", "role", "tier", "is_active", "created_at"}
    async with api.ctx.sessions() as session:
        user = (await session.execute(select(User))).scalar_one()
    assert user.password_hash.startswith("$argon2id$")
    assert "x" * 8 not in user.password_hash


async def test_register_duplicate_email_is_409(api):
    await api.register("dup@example.com")
    r = await api.client.post(
        "/api/v1/auth/register", json={"email": "DUP@example.com", "password": "y" * 10}
    )
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": "longenough"}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": "p" * 1025}, "password"),
        ({"email": "a@example.com", "password": 12345678}, "password"),
        ({"email": "a@example.com"}, "password"),
        ({"email": "a@example.com", "password": "longenough", "role": "admin"}, "role"),
    ],
)
async def test_register_rejects_bad_input_naming_the_field(api, body, field):
    r = await api.client.post("/api/v1/auth/register", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["status"] == 422
    assert any(field in e["loc"] for e in problem["errors"])
    # The offending value is never echoed back (it may be a password).
    assert "longenough" not in r.text and "p" * 100 not in r.text


async def test_huge_password_is_refused_before_hashing(api):
    start = time.perf_counter()
    r = await api.client.post(
        "/api/v1/auth/register", json={"email": "big@example.com", "password": "a" * 1_000_000}
    )
    assert r.status_code == 422
    assert time.perf_counter() - start < 2


async def test_login_json_and_oauth2_form(api):
    await api.register("form@example.com")
    r = await api.client.post(
        "/api/v1/auth/login",
        data={"username": "form@example.com", "password": "correct horse battery"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert body["refresh_token"].startswith("rt_")
    me = await api.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200 and me.json()["email"] == "form@example.com"
    r = await api.client.post(
        "/api/v1/auth/login",
        json={"email": "FORM@example.com", "password": "correct horse battery"},
    )
    assert r.status_code == 200


async def test_login_unknown_user_and_wrong_password_look_the_same(api):
    await api.register("known@example.com")
    unknown = await api.client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever1"}
    )
    wrong = await api.client.post(
        "/api/v1/auth/login", json={"email": "known@example.com", "password": "whatever1"}
    )
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]
    async with api.ctx.sessions() as session:
        events = (await session.execute(select(AuditEvent.event))).scalars().all()
    assert events.count("login.failed") == 2


@pytest.mark.parametrize(
    ("content", "ctype", "status"),
    [
        (b'{"email": "a@example.com", "password": ', "application/json", 422),
        (b"[1, 2]", "application/json", 422),
        (b"<xml/>", "application/xml", 415),
    ],
)
async def test_login_malformed_bodies(api, content, ctype, status):
    r = await api.client.post(
        "/api/v1/auth/login", content=content, headers={"content-type": ctype}
    )
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"


async def test_disabled_account_cannot_log_in(api):
    admin = await api.user("root@example.com", role="admin")
    target = await api.register("off@example.com")
    r = await api.client.patch(
        f"/api/v1/admin/users/{target['id']}", json={"is_active": False}, headers=admin
    )
    assert r.status_code == 200
    r = await api.client.post(
        "/api/v1/auth/login", json={"email": "off@example.com", "password": "correct horse battery"}
    )
    assert r.status_code == 401
