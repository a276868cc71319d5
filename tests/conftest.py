"""Every API test runs on SQLite and, when INFERX_TEST_DATABASE_URL / INFERX_TEST_REDIS_URL are
set, again on PostgreSQL + Redis over real connections. Each test starts from a clean state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from inferx.app import create_app
from inferx.config import Settings
from inferx.db import create_engine, upgrade
from inferx.http_protocol import CoalescingHttpToolsProtocol
from inferx.tables import Base

PG_URL = os.environ.get("INFERX_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("INFERX_TEST_REDIS_URL")
BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])
PASSWORD = "correct horse battery"

FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


def _async_pg(url: str) -> str:
    return "postgresql+asyncpg://" + url.split("://", 1)[1]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once per session; each test gets a copy (migrations are tested by this too)."""
    path = tmp_path_factory.mktemp("template") / "inferx.db"

    async def build() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(build())
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of our own on the test server, so parallel runs never share rows."""
    assert PG_URL
    server = make_url(_async_pg(PG_URL))
    name = f"inferx_test_{uuid.uuid4().hex[:12]}"
    admin_url = server.set(database="postgres")

    async def admin(sql: str) -> None:
        engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    async def migrate(url: str) -> None:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    asyncio.run(migrate(url))
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_settings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[..., Settings]:
    db_url: str | None = None
    redis_url: str | None = None
    if backend == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "inferx.db")
    else:
        db_url = request.getfixturevalue("pg_url")
        redis_url = REDIS_URL
    prefix = f"inferxtest:{uuid.uuid4().hex[:12]}:"

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "test",
            "data_dir": tmp_path,
            "database_url": db_url,
            "redis_url": redis_url,
            "redis_prefix": prefix,
            "auto_migrate": False,
            "inference_workers": 1,
            "inference_eager_start": False,
            "prediction_log_flush_s": 0.2,
            **FAST_ARGON2,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


async def _reset_redis(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        keys = [k async for k in redis.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@dataclass
class Api:
    """An HTTP client on a live app, with the few steps most tests start with."""

    client: httpx.AsyncClient
    app: Any

    @property
    def ctx(self) -> Any:
        return self.app.state.ctx

    async def register(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/auth/register", json={"email": email, "password": password}
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def user(self, email: str, *, role: str = "user") -> dict[str, str]:
        """Register and log in; returns Authorization headers."""
        await self.register(email)
        if role != "user":
            await self.set_role(email, role)
        tokens = await self.login(email)
        return {"Authorization": f"Bearer {tokens['access_token']}"}

    async def set_role(self, email: str, role: str) -> None:
        from sqlalchemy import update

        from inferx.tables import User

        async with self.ctx.sessions() as session, session.begin():
            await session.execute(update(User).where(User.email == email).values(role=role))

    async def api_key(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/api-keys", json={"name": "test", **body}, headers=headers
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def upload(
        self, headers: dict[str, str], path: Path, name: str = "iris", **fields: str
    ) -> dict[str, Any]:
        """Upload a model file; returns the created model."""
        r = await self.client.post(
            "/api/v1/models/upload",
            files={"file": (path.name, path.read_bytes())},
            data={"name": name, **fields},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        return dict(r.json())


@pytest.fixture
async def make_api(
    backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Any]]:
    """Start one or more apps (e.g. two replicas) on the test's settings."""
    stack: list[tuple[LifespanManager, httpx.AsyncClient, Settings]] = []

    async def start(settings: Settings) -> Api:
        if backend == "postgres" and not stack:
            await _reset_postgres(settings.db_url)
        app = create_app(settings)
        manager = LifespanManager(app, startup_timeout=30, shutdown_timeout=30)
        await manager.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app, client=("10.1.2.3", 1234)),
            base_url="http://test",
        )
        stack.append((manager, client, settings))
        return Api(client=client, app=app)

    yield start
    for manager, client, _settings in reversed(stack):
        await client.aclose()
        await manager.__aexit__(None, None, None)
    if backend == "postgres" and stack and REDIS_URL:
        await _reset_redis(REDIS_URL, stack[0][2].redis_prefix)


@pytest.fixture
async def api(make_api: Callable[..., Any], settings: Settings) -> Api:
    result: Api = await make_api(settings)
    return result


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real model files: iris LogisticRegression as pickle, joblib, skops and ONNX, plus a
    20-feature RandomForest and a regressor."""
    import pickle

    import joblib
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression

    out = tmp_path_factory.mktemp("models")
    x, y = load_iris(return_X_y=True)
    iris = LogisticRegression(max_iter=500).fit(x, y)
    files = {"iris.pkl": out / "iris.pkl", "iris.joblib": out / "iris.joblib"}
    files["iris.pkl"].write_bytes(pickle.dumps(iris, protocol=5))
    joblib.dump(iris, files["iris.joblib"])
    try:
        import skops.io

        files["iris.skops"] = out / "iris.skops"
        skops.io.dump(iris, files["iris.skops"])
    except ImportError:
        pass
    try:
        from skl2onnx import to_onnx

        onx = to_onnx(iris, x[:1].astype(np.float32), options={id(iris): {"zipmap": False}})
        files["iris.onnx"] = out / "iris.onnx"
        files["iris.onnx"].write_bytes(onx.SerializeToString())
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    xr = rng.normal(size=(400, 20))
    yr = (xr[:, 0] + xr[:, 1] > 0).astype(int)
    rf = RandomForestClassifier(n_estimators=100, random_state=0).fit(xr, yr)
    files["rf.joblib"] = out / "rf.joblib"
    joblib.dump(rf, files["rf.joblib"])
    reg = LinearRegression().fit(xr[:, :3], xr[:, 0] * 2 + 1)
    files["reg.pkl"] = out / "reg.pkl"
    files["reg.pkl"].write_bytes(pickle.dumps(reg))
    return files


@contextlib.asynccontextmanager
async def _live_server(app: Any) -> AsyncIterator[str]:
    """``app`` (already started) on a real loopback socket, served from this event loop by
    uvicorn with the connection protocol ``inferx serve`` uses; yields ``127.0.0.1:port``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        ws="none",
        access_log=False,
        http=CoalescingHttpToolsProtocol,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
def live_server() -> Callable[[Any], contextlib.AbstractAsyncContextManager[str]]:
    """``async with live_server(app) as "127.0.0.1:port"``: the app over real HTTP."""
    return _live_server
