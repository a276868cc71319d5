from __future__ import annotations

from sqlalchemy import select

from inferx.tables import AuditEvent


async def test_admin_lists_and_updates_users_with_audit(api):
    admin = await api.user("root@example.com", role="admin")
    target = await api.register("zed@example.com")
    r = await api.client.get("/api/v1/admin/users", headers=admin, params={"limit": 1_000_000})
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == 2 and page["limit"] == 100 and len(page["items"]) == 2
    r = await api.client.get("/api/v1/admin/users", headers=admin, params={"email": "zed"})
    assert [u["email"] for u in r.json()["items"]] == ["zed@example.com"]
    r = await api.client.patch(
        f"/api/v1/admin/users/{target['id']}", json={"tier": "pro", "role": "admin"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["tier"] == "pro" and r.json()["role"] == "admin"
    r = await api.client.get(
        "/api/v1/admin/audit-events", headers=admin, params={"event": "user.tier_changed"}
    )
    events = r.json()["items"]
    assert len(events) == 1 and events[0]["details"] == {"old": "free", "new": "pro"}


async def test_users_cannot_reach_admin_routes_or_escalate(api):
    user = await api.user("plain@example.com")
    me = (await api.client.get("/api/v1/auth/me", headers=user)).json()
    assert (await api.client.get("/api/v1/admin/users", headers=user)).status_code == 403
    assert (await api.client.get("/api/v1/admin/audit-events", headers=user)).status_code == 403
    r = await api.client.patch(
        f"/api/v1/admin/users/{me['id']}", json={"role": "admin"}, headers=user
    )
    assert r.status_code == 403
    assert (await api.client.get("/api/v1/admin/users")).status_code == 401
    # There is no self-service route that takes a role.
    r = await api.client.patch("/api/v1/auth/me", json={"role": "admin"}, headers=user)
    assert r.status_code == 405
    assert (await api.client.get("/api/v1/auth/me", headers=user)).json()["role"] == "user"


async def test_admin_patch_validates_and_protects_itself(api):
    admin = await api.user("root@example.com", role="admin")
    me = (await api.client.get("/api/v1/auth/me", headers=admin)).json()
    r = await api.client.patch(
        f"/api/v1/admin/users/{me['id']}", json={"role": "user"}, headers=admin
    )
    assert r.status_code == 409
    r = await api.client.patch(
        f"/api/v1/admin/users/{me['id']}", json={"tier": "gold"}, headers=admin
    )
    assert r.status_code == 422
    r = await api.client.patch(
        f"/api/v1/admin/users/{me['id']}", json={"email": "x@example.com"}, headers=admin
    )
    assert r.status_code == 422
    r = await api.client.patch(
        "/api/v1/admin/users/00000000-0000-0000-0000-000000000000",
        json={"tier": "pro"},
        headers=admin,
    )
    assert r.status_code == 404


async def test_deactivated_user_is_locked_out_everywhere(api):
    admin = await api.user("root@example.com", role="admin")
    user = await api.user("gone@example.com")
    key = await api.api_key(user)
    me = (await api.client.get("/api/v1/auth/me", headers=user)).json()
    await api.client.patch(
        f"/api/v1/admin/users/{me['id']}", json={"is_active": False}, headers=admin
    )
    assert (await api.client.get("/api/v1/auth/me", headers=user)).status_code == 401
    assert (
        await api.client.get("/api/v1/auth/me", headers={"X-API-Key": key["key"]})
    ).status_code == 401
    async with api.ctx.sessions() as session:
        events = (await session.execute(select(AuditEvent.event))).scalars().all()
    assert "user.is_active_changed" in events and "api_key.created" in events
