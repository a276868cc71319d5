"""A private redis-server for the benchmarks: loopback, a free port, no persistence.

Used by predict_load.py (the ``inferx-redis`` config) and quota_redis_outage.py (which kills,
restarts and hangs it). ``start()`` after a kill brings it back empty on the same port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

BINARY = "redis-server"


def installed() -> str | None:
    """The redis-server executable, or None when it is not installed."""
    return shutil.which(BINARY)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            *(BINARY, "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
        ]

    def launch(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        """Start the process; predict_load.py overrides this to track it with its others."""
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self.proc = self.launch(self.command())
        client = self.client()
        try:
            for _ in range(200):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    time.sleep(0.02)
        finally:
            client.close()
        raise RuntimeError("redis-server did not answer PING within 4 s")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=0.2, socket_connect_timeout=0.2)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a hung (SIGSTOPped) server, too
            self.proc.kill()
            self.proc.wait(timeout=10)
