from __future__ import annotations


async def test_live_ready_and_detail(api):
    assert (await api.client.get("/health/live")).json() == {"status": "ok"}
    r = await api.client.get("/health/ready")
    assert r.status_code == 200
    names = {c["name"] for c in r.json()["checks"]}
    assert "database" in names
    assert ("redis" in names) == (api.ctx.settings.redis_url is not None)
    detail = (await api.client.get("/health")).json()
    assert detail["status"] == "ok" and detail["version"]


async def test_ready_is_503_naming_the_database_when_it_is_down(api):
    await api.ctx.engine.dispose()
    original = api.ctx.engine.url
    from inferx.db import create_engine

    if api.ctx.settings.is_sqlite:
        api.ctx.engine = create_engine("sqlite+aiosqlite:////nonexistent-dir/x.db")
    else:
        api.ctx.engine = create_engine(str(original.set(port=1)))
    r = await api.client.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["failing"] == ["database"]
    assert (await api.client.get("/health/live")).status_code == 200
    await api.ctx.engine.dispose()


async def test_ready_names_redis_when_it_is_down(make_settings, make_api):
    settings = make_settings(redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.2)
    api = await make_api(settings)
    r = await api.client.get("/health/ready")
    assert r.status_code == 503 and r.json()["failing"] == ["redis"]


async def test_ready_turns_503_while_shutting_down(api):
    api.ctx.shutting_down = True
    r = await api.client.get("/health/ready")
    assert r.status_code == 503 and r.json()["status"] == "shutting_down"
    api.ctx.shutting_down = False


async def test_docs_are_served_without_a_cdn(api):
    for path in ("/docs", "/api/v1/docs", "/redoc"):
        r = await api.client.get(path)
        assert r.status_code == 200
        assert "cdn.jsdelivr" not in r.text and "/_docs-assets/" in r.text
    assert (await api.client.get("/_docs-assets/swagger-ui-bundle.js")).status_code == 200
    spec = (await api.client.get("/openapi.json")).json()
    assert "/api/v1/auth/login" in spec["paths"]
    schemes = spec["components"]["securitySchemes"]
    assert {"OAuth2PasswordBearer", "APIKeyHeader"} <= set(schemes)
