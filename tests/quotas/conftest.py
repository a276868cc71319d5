"""Quota fixtures: a route limited by the prediction quota, a clock the tests move, and private
redis-server processes (never the shared Redis: these get killed and paused)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from inferx.quotas.dependencies import PredictionQuota

LIMITED = "/api/v1/_test/limited"


class Clock:
    """Wall time that only moves when told to: a day of quota in a second of test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def make_settings(make_settings: Callable[..., Any]) -> Callable[..., Any]:
    """The root fixture, with inference processes started only when a test predicts."""

    def make(**overrides: Any) -> Any:
        return make_settings(inference_eager_start=False, inference_workers=1, **overrides)

    return make


@pytest.fixture
def clock() -> Clock:
    return Clock()


def add_limited_route(app: Any) -> None:
    async def limited(quota: PredictionQuota) -> dict[str, Any]:
        return {"ok": True, "limit": quota.binding.name if quota.binding else None}

    app.add_api_route(LIMITED, limited, methods=["POST"])


@pytest.fixture
def limited() -> Callable[[Any], str]:
    """Adds the quota-limited test route to a started Api; returns its path."""

    def add(api: Any) -> str:
        add_limited_route(api.app)
        return LIMITED

    return add


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A redis-server of the test's own, on a free port, with no persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)


def _need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the private-Redis tests need one")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis this test may kill, pause and restart."""
    _need_redis_server()
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One private Redis for the tests that only read and write (unique key prefixes)."""
    _need_redis_server()
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
