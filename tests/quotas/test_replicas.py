"""Two ``inferx serve`` processes on one PostgreSQL and one Redis enforce one global limit."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

REDIS_URL = os.environ.get("INFERX_TEST_REDIS_URL")
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "inferx.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server never became ready:\n{log.read_text()[-3000:]}")


@pytest.fixture
def replicas(backend, request, tmp_path):
    if backend != "postgres" or not REDIS_URL:
        pytest.skip("two replicas share PostgreSQL + Redis: runs in the PostgreSQL+Redis variant")
    pg_url = request.getfixturevalue("pg_url")
    prefix = f"inferxtest:{uuid.uuid4().hex[:12]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERX_")}
    env.update(
        INFERX_DATABASE_URL=pg_url,
        INFERX_REDIS_URL=REDIS_URL,
        INFERX_REDIS_PREFIX=prefix,
        INFERX_SECRET_KEY="replica-test-secret-" + "x" * 32,
        INFERX_DATA_DIR=str(tmp_path / "shared"),  # one model store, as a shared volume would be
        INFERX_AUTO_MIGRATE="false",
        INFERX_ARGON2_MEMORY_KIB="1024",
        INFERX_ARGON2_TIME_COST="1",
        INFERX_ARGON2_PARALLELISM="1",
        INFERX_INFERENCE_WORKERS="1",
        INFERX_SHUTDOWN_DELAY_S="0",
    )
    procs, bases = [], []
    for name in ("a", "b"):
        port = _free_port()
        log = tmp_path / f"replica-{name}.log"
        procs.append((_start(port, env, log), log))
        bases.append(f"http://127.0.0.1:{port}")
    try:
        for base, (proc, log) in zip(bases, procs, strict=True):
            _wait_ready(base, proc, log)
        yield bases
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


async def test_a_user_hammering_two_replicas_gets_the_limit_in_total(replicas, model_files):
    a, b = replicas
    email = f"hammer-{uuid.uuid4().hex[:8]}@example.com"
    creds = {"email": email, "password": "correct horse battery"}
    async with httpx.AsyncClient(timeout=60) as c:
        assert (await c.post(f"{a}/api/v1/auth/register", json=creds)).status_code == 201
        token = (await c.post(f"{b}/api/v1/auth/login", json=creds)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        key = (await c.post(f"{a}/api/v1/api-keys", json={"name": "k"}, headers=auth)).json()
        path = model_files["iris.pkl"]
        r = await c.post(
            f"{a}/api/v1/models/upload",
            files={"file": (path.name, path.read_bytes())},
            data={"name": "iris"},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        url = f"/api/v1/predict/{r.json()['id']}"
        headers = {"X-API-Key": key["key"]}

        async def predict(base: str) -> httpx.Response:
            return await c.post(f"{base}{url}", json={"input": [IRIS_ROW]}, headers=headers)

        # 20 to each replica, all in flight together: the free tier allows 10 a minute.
        results = await asyncio.gather(*(predict(base) for base in [a, b] * 20))
    statuses = [r.status_code for r in results]
    assert set(statuses) == {200, 429}, [r.text for r in results if r.status_code not in (200, 429)]
    assert statuses.count(200) == 10
    refused = next(r for r in results if r.status_code == 429)
    assert refused.json()["limit"] == "burst" and refused.headers["ratelimit-remaining"] == "0"
    async with httpx.AsyncClient(timeout=10) as c:
        usage = (await c.get(f"{b}/api/v1/usage", headers=headers)).json()
    assert usage["predictions_today"] == 10 and usage["per_minute"]["remaining"] == 0
