from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field

import pytest

JOBS_TESTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "jobs")
if JOBS_TESTS not in sys.path:
    sys.path.insert(0, JOBS_TESTS)

from jobs_testkit import FAST_JOBS  # noqa: E402

HOOK_SETTINGS = {
    **FAST_JOBS,
    "webhook_allow_private": ["127.0.0.0/8"],
    "webhook_retry_base_s": 0.2,
}


@dataclass
class Hit:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A tiny HTTP server on loopback that records requests and answers from a script:
    each answer is (status, headers, body); the last one repeats."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(
        default_factory=lambda: [(200, {}, b"ok")]
    )
    hits: list[Hit] = field(default_factory=list)
    connections: int = 0
    drip: bool = False
    port: int = 0
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def wait_hits(self, n: int, timeout: float = 20.0) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while len(self.hits) < n:
            assert time.monotonic() < deadline, f"got {len(self.hits)} of {n} requests"
            await asyncio.sleep(0.02)
        return self.hits

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.hits.append(Hit(time.monotonic(), path, headers, body))
            status, extra, payload = self.answers[min(len(self.hits) - 1, len(self.answers) - 1)]
            if self.drip:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
                for _ in range(1000):
                    writer.write(b"x" * 10)
                    await writer.drain()
                    await asyncio.sleep(0.05)
                return
            extra_lines = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n"
                f"Connection: close\r\n{extra_lines}\r\n".encode()
                + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def hooks_api(make_api, make_settings):
    return await make_api(make_settings(**HOOK_SETTINGS))
