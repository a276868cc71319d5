"""The real thing: ``inferx serve`` in a subprocess, driven over HTTP on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERX_")}
    env.update(
        INFERX_DATA_DIR=str(data_dir),
        INFERX_ARGON2_MEMORY_KIB="1024",
        INFERX_ARGON2_TIME_COST="1",
        INFERX_ARGON2_PARALLELISM="1",
        **extra,
    )
    return env


def _inferx(*args: str) -> list[str]:
    return [sys.executable, "-m", "inferx.cli", *args]


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited early: {proc.stdout.read().decode() if proc.stdout else ''}"
            )
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server never became ready")


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        _inferx("serve", "--port", str(port), "--data-dir", str(tmp_path / "data")),
        env=_env(tmp_path / "data", INFERX_SHUTDOWN_DELAY_S="1.5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        yield base, proc, tmp_path / "data"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_walkthrough_over_http_and_graceful_sigterm(server):
    base, proc, data_dir = server
    with httpx.Client(base_url=base, timeout=10) as c:
        assert (
            c.post(
                "/api/v1/auth/register",
                json={"email": "ada@example.com", "password": "correct horse"},
            ).status_code
            == 201
        )
        tokens = c.post(
            "/api/v1/auth/login", json={"email": "ada@example.com", "password": "correct horse"}
        ).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        key = c.post("/api/v1/api-keys", json={"name": "laptop"}, headers=auth).json()["key"]
        me = c.get("/api/v1/auth/me", headers={"X-API-Key": key})
        assert me.status_code == 200 and me.json()["email"] == "ada@example.com"
    assert (data_dir / "inferx.db").exists() and (data_dir / "secret.key").exists()

    # A request in flight when SIGTERM arrives: its body trickles in over ~2.5 s.
    result: dict[str, int] = {}

    def slow_register() -> None:
        def body():
            yield b'{"email": "slow@example.com", '
            time.sleep(2.5)
            yield b'"password": "correct horse"}'

        with httpx.Client(base_url=base, timeout=30) as c:
            r = c.post(
                "/api/v1/auth/register",
                content=body(),
                headers={"content-type": "application/json"},
            )
            result["status"] = r.status_code

    t = threading.Thread(target=slow_register)
    t.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    ready = httpx.get(f"{base}/health/ready", timeout=5)
    assert ready.status_code == 503
    assert httpx.get(f"{base}/health/live", timeout=5).status_code == 200
    t.join(timeout=30)
    assert result.get("status") == 201
    assert proc.wait(timeout=30) == 0
    logs = proc.stdout.read().decode() if proc.stdout else ""
    assert key not in logs and tokens["access_token"] not in logs and "correct horse" not in logs


def test_cli_creates_an_admin_and_upgrades_the_database(tmp_path, server):
    base, _proc, data_dir = server
    env = _env(data_dir)
    r = subprocess.run(
        _inferx("db", "upgrade"), env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        _inferx("users", "create-admin", "--email", "Boss@Example.com", "--password-stdin"),
        env=env,
        input="boss password 1\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "admin boss@example.com created" in r.stdout
    with httpx.Client(base_url=base, timeout=10) as c:
        tokens = c.post(
            "/api/v1/auth/login", json={"email": "boss@example.com", "password": "boss password 1"}
        ).json()
        r = c.get(
            "/api/v1/admin/users", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert r.status_code == 200 and r.json()["items"][0]["role"] == "admin"
    r = subprocess.run(
        _inferx("users", "create-admin", "--email", "x@example.com", "--password-stdin"),
        env=env,
        input="short\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "8 to 1024" in r.stderr


def test_invalid_settings_stop_the_server_with_a_clear_message(tmp_path):
    r = subprocess.run(
        _inferx("serve"),
        env=_env(tmp_path, INFERX_ENV="production"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "INFERX_SECRET_KEY" in r.stderr and "Traceback" not in r.stderr
