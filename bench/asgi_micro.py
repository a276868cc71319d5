"""Micro-benchmark of the API process's own work per prediction, without HTTP or a client.

The InferX app (embedded defaults: SQLite, in-process quotas and caches, one inference
process) is called as ASGI, in this process, with scopes shaped like uvicorn's; ``--conc``
tasks each send single-row requests, every row different, through auth, quota, validation,
batching, the inference process and the prediction log. It prints requests/s and this
process's CPU time per request (``time.process_time``: every thread, the prediction log's
database thread included; the inference process is not counted), the median of ``--repeat``
runs. Without uvicorn, wrk and py-spy on the box, a change of a few µs per request shows.

Run: .venv/bin/python bench/asgi_micro.py [--model lr|rf] [--conc 64] [--requests 20000]
                                          [--repeat 3] [--env INFERX_X=value ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import predict_load as pl
import uvloop
from asgi_lifespan import LifespanManager


async def setup(app: Any, files: pl.ModelFiles) -> tuple[str, str]:
    """A user, an API key and the model: what ``predict_load.InferX`` sets up over HTTP."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench/api/v1") as c:
        body = {"email": "bench@example.com", "password": "a long bench password"}
        (await c.post("/auth/register", json=body)).raise_for_status()
        r = await c.post("/auth/login", json=body)
        user = {"Authorization": f"Bearer {r.raise_for_status().json()['access_token']}"}
        key = (await c.post("/api-keys", json={"name": "bench"}, headers=user)).json()["key"]
        r = await c.post(
            "/models/upload",
            files={"file": (files.path.name, files.path.read_bytes())},
            data={"name": "bench"},
            headers=user,
        )
        model_id = r.raise_for_status().json()["id"]
        return key, f"/api/v1/predict/{model_id}"


async def drive(app: Any, key: str, path: str, bodies: list[bytes], conc: int) -> None:
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"x-api-key", key.encode()),
    ]
    state: dict[str, Any] = {}
    rows = iter(bodies)
    statuses: dict[int, int] = {}

    async def one(body: bytes) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "POST",
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [*headers, (b"content-length", b"%d" % len(body))],
            "state": state.copy(),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)  # http.disconnect never comes here
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    async def client() -> None:
        for body in rows:
            await one(body)

    await asyncio.gather(*(client() for _ in range(conc)))
    if set(statuses) != {200}:
        raise RuntimeError(f"statuses {statuses}")


async def main_async(args: argparse.Namespace) -> None:
    from inferx.app import create_app
    from inferx.cli import _upgrade
    from inferx.config import Settings

    work = Path(tempfile.mkdtemp(prefix="inferx-asgi-micro-"))
    files = pl.build_models(work, args.requests * (args.repeat + 1) + 1000)[args.model]
    settings = Settings(
        data_dir=work / "data",
        inference_workers=1,
        quota_free_per_minute=1_000_000_000,  # limits that never refuse, checks still made
        quota_free_per_day=0,
        log_level="WARNING",
    )
    settings.data_dir.mkdir(parents=True)
    await _upgrade(settings)
    app = create_app(settings)
    bodies = [line.encode() for line in files.bodies.read_text().splitlines()]
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        key, path = await setup(app, files)
        await drive(app, key, path, bodies[:1000], args.conc)  # warm-up: model load, caches
        results = []
        for i in range(args.repeat):
            chunk = bodies[1000 + i * args.requests : 1000 + (i + 1) * args.requests]
            cpu0, t0 = time.process_time(), time.perf_counter()
            await drive(app, key, path, chunk, args.conc)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            results.append((cpu / len(chunk) * 1e6, len(chunk) / wall))
            print(  # noqa: T201
                f"run {i + 1}: {results[-1][1]:.0f} req/s, {results[-1][0]:.1f} µs CPU/req",
                flush=True,
            )
    cpu_med = statistics.median(r[0] for r in results)
    rps_med = statistics.median(r[1] for r in results)
    print(  # noqa: T201
        json.dumps(
            {
                "model": args.model,
                "conc": args.conc,
                "env": args.env,
                "cpu_us_per_req": round(cpu_med, 1),
                "req_per_s": round(rps_med),
            }
        )
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="lr", choices=["lr", "rf"])
    p.add_argument("--conc", type=int, default=64)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--env", action="append", default=[], metavar="INFERX_X=value")
    args = p.parse_args()
    for kv in args.env:
        name, _, value = kv.partition("=")
        os.environ[name] = value
    uvloop.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
