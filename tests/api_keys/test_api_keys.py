from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from inferx.tables import ApiKey


async def test_create_key_shows_secret_once_and_stores_only_its_hash(api):
    headers = await api.user("keys@example.com")
    created = await api.api_key(headers, name="ci", expires_in_days=30)
    key = created["key"]
    assert key.startswith("mlp_") and len(key) >= 4 + 43
    assert created["prefix"] == key[:12]
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    async with api.ctx.sessions() as session:
        row = (await session.execute(select(ApiKey))).scalar_one()
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    listed = (await api.client.get("/api/v1/api-keys", headers=headers)).json()
    assert len(listed) == 1 and "key" not in listed[0] and "key_hash" not in listed[0]
    assert (
        key not in (await api.client.get(f"/api/v1/api-keys/{created['id']}", headers=headers)).text
    )


async def test_key_authenticates_in_both_headers_and_tracks_last_use(api):
    headers = await api.user("use@example.com")
    key = (await api.api_key(headers))["key"]
    for h in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        r = await api.client.get("/api/v1/auth/me", headers=h)
        assert r.status_code == 200 and r.json()["email"] == "use@example.com"
    listed = (await api.client.get("/api/v1/api-keys", headers=headers)).json()
    assert listed[0]["last_used_at"] is not None
    await api.ctx.key_usage.flush()
    async with api.ctx.sessions() as session:
        assert (await session.execute(select(ApiKey.last_used_at))).scalar_one() is not None


async def test_revoked_disabled_expired_and_unknown_keys_are_401(api):
    headers = await api.user("rev@example.com")
    revoked = await api.api_key(headers, name="revoked")
    disabled = await api.api_key(headers, name="disabled")
    expired = await api.api_key(headers, name="expired")
    assert (
        await api.client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=headers)
    ).status_code == 204
    r = await api.client.patch(
        f"/api/v1/api-keys/{disabled['id']}", json={"is_active": False}, headers=headers
    )
    assert r.status_code == 200 and r.json()["is_active"] is False
    async with api.ctx.sessions() as session, session.begin():
        await session.execute(
            update(ApiKey)
            .where(ApiKey.name == "expired")
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    for key in (revoked["key"], disabled["key"], expired["key"], "mlp_" + "A" * 43, "nonsense"):
        r = await api.client.get("/api/v1/auth/me", headers={"X-API-Key": key})
        assert r.status_code == 401, key
    # A revoked key stays revoked.
    r = await api.client.patch(
        f"/api/v1/api-keys/{revoked['id']}", json={"is_active": True}, headers=headers
    )
    assert r.status_code == 409
    r = await api.client.patch(
        f"/api/v1/api-keys/{disabled['id']}", json={"is_active": True}, headers=headers
    )
    assert r.status_code == 200
    assert (
        await api.client.get("/api/v1/auth/me", headers={"X-API-Key": disabled["key"]})
    ).status_code == 200


async def test_other_users_keys_answer_404(api):
    alice = await api.user("alice@example.com")
    bob = await api.user("bob@example.com")
    key = await api.api_key(alice)
    for method, kwargs in (("get", {}), ("patch", {"json": {"name": "x"}}), ("delete", {})):
        r = await getattr(api.client, method)(
            f"/api/v1/api-keys/{key['id']}", headers=bob, **kwargs
        )
        assert r.status_code == 404
    assert (await api.client.get("/api/v1/api-keys", headers=bob)).json() == []
    assert (await api.client.get(f"/api/v1/api-keys/{key['id']}", headers=alice)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "expires_in_days": 0},
        {"name": "x", "expires_in_days": 366},
        {"name": ""},
        {"name": "x", "user_id": "y"},
        {},
    ],
)
async def test_key_creation_validates_body(api, body):
    headers = await api.user("v@example.com")
    r = await api.client.post("/api/v1/api-keys", json=body, headers=headers)
    assert r.status_code == 422


async def test_active_keys_are_capped(make_settings, make_api):
    api = await make_api(make_settings(api_key_max_active=2))
    headers = await api.user("cap@example.com")
    await api.api_key(headers)
    await api.api_key(headers)
    r = await api.client.post("/api/v1/api-keys", json={"name": "third"}, headers=headers)
    assert r.status_code == 409


async def test_keys_cannot_be_managed_with_a_malformed_id(api):
    headers = await api.user("m@example.com")
    r = await api.client.get("/api/v1/api-keys/not-a-uuid", headers=headers)
    assert r.status_code == 422
