"""Redis killed, then hung, under prediction load: nothing fails, quotas come back by themselves.

Starts a private redis-server and ``inferx serve`` (SQLite, that Redis) on loopback, drives
predictions with httpx from a few concurrent clients, SIGKILLs Redis, restarts it (empty), then
SIGSTOPs and SIGCONTs it. Prints the failed requests (must be 0), latency per phase, how long
after Redis came back the limiter left its in-process fallback, and whether the limit kept in
Redis is enforced again. Bounded: under 60 s.

Run: .venv/bin/python bench/quota_redis_outage.py [--clients 8] [--redis-timeout 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from redis_server import RedisServer, free_port, installed

PASSWORD = "bench password 1"
ROW = [5.1, 3.5, 1.4, 0.2]


def note(message: str) -> None:
    """Progress on stderr, so a stuck phase shows where it is."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Sample:
    at: float
    ms: float
    status: int  # 0: transport error


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)


def env_for(data_dir: Path, redis_url: str, timeout_s: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERX_")}
    env.update(
        INFERX_DATA_DIR=str(data_dir),
        INFERX_REDIS_URL=redis_url,
        INFERX_REDIS_PREFIX="bench:",
        INFERX_REDIS_TIMEOUT_S=str(timeout_s),
        INFERX_ARGON2_MEMORY_KIB="1024",
        INFERX_ARGON2_TIME_COST="1",
        INFERX_ARGON2_PARALLELISM="1",
        INFERX_LOG_LEVEL="INFO",
        INFERX_SHUTDOWN_DELAY_S="0",
    )
    return env


async def setup(c: httpx.AsyncClient, model: Path) -> dict[str, str]:
    """An admin, a load user who is never limited, a probe user at 20 a minute; their keys."""
    admin = (
        await c.post("/api/v1/auth/login", json={"email": "root@bench.dev", "password": PASSWORD})
    ).json()
    admin_auth = {"Authorization": f"Bearer {admin['access_token']}"}
    out: dict[str, str] = {}
    for name, quotas in (
        ("load", {"quota_per_minute": 10**9, "quota_per_day": 10**9}),
        ("probe", {"quota_per_minute": 20}),
    ):
        creds = {"email": f"{name}@bench.dev", "password": PASSWORD}
        user = (await c.post("/api/v1/auth/register", json=creds)).json()
        r = await c.patch(f"/api/v1/admin/users/{user['id']}", json=quotas, headers=admin_auth)
        r.raise_for_status()
        token = (await c.post("/api/v1/auth/login", json=creds)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        key = (await c.post("/api/v1/api-keys", json={"name": "bench"}, headers=auth)).json()
        r = await c.post(
            "/api/v1/models/upload",
            files={"file": (model.name, model.read_bytes())},
            data={"name": "iris"},
            headers=auth,
        )
        r.raise_for_status()
        out[f"{name}_key"] = key["key"]
        out[f"{name}_url"] = f"/api/v1/predict/{r.json()['id']}"
        out[f"{name}_user"] = user["id"]
    return out


async def predict(c: httpx.AsyncClient, ids: dict[str, str], who: str) -> httpx.Response:
    return await c.post(
        ids[f"{who}_url"], json={"input": [ROW]}, headers={"X-API-Key": ids[f"{who}_key"]}
    )


async def client_loop(
    c: httpx.AsyncClient, url: str, key: str, run: Run, t0: float, until: float
) -> None:
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            r = await c.post(url, json={"input": [ROW]}, headers={"X-API-Key": key})
            status = r.status_code
        except httpx.HTTPError:
            status = 0
        run.samples.append(Sample(start - t0, (time.monotonic() - start) * 1000, status))


async def back_on_redis(c: httpx.AsyncClient, since: float, t0: float) -> float:
    """Seconds from ``since`` until the limiter left its fallback (``/health``: quotas
    ``degraded`` false); inf when not within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            health = (await c.get("/health", timeout=2)).json()
            if not health["quotas"]["degraded"]:
                return time.monotonic() - t0 - since
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    return float("inf")


def phase_stats(run: Run, start: float, end: float) -> str:
    window = [s for s in run.samples if start <= s.at < end]
    if not window:
        return "no requests"
    ms = sorted(s.ms for s in window)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    bad = sum(1 for s in window if s.status == 0 or s.status >= 500)
    return (
        f"{len(window):5d} requests  {len(window) / (end - start):6.1f}/s  "
        f"p50 {statistics.median(ms):6.1f} ms  p99 {p99:6.1f} ms  max {ms[-1]:6.1f} ms  "
        f"failed {bad}"
    )


async def drive(base: str, server: RedisServer, model: Path, clients: int) -> Run:
    run = Run()
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        note("setting up users, keys and models")
        ids = await setup(c, model)
        note("warming up")
        for _ in range(3):  # load the model before measuring
            (await predict(c, ids, "load")).raise_for_status()
        t0 = time.monotonic()
        run.marks["wall0"] = time.time()
        end = 24.0
        loops = [
            asyncio.create_task(client_loop(c, ids["load_url"], ids["load_key"], run, t0, t0 + end))
            for _ in range(clients)
        ]

        async def at(second: float) -> None:
            await asyncio.sleep(max(0.0, t0 + second - time.monotonic()))

        note(f"load: {clients} clients")
        await at(3)
        note("SIGKILL redis")
        run.marks["kill"] = time.monotonic() - t0
        server.signal(signal.SIGKILL)
        await at(7)
        server.start()  # empty: no persistence
        note("redis restarted")
        run.marks["restart"] = time.monotonic() - t0
        run.marks["recovered_after_restart"] = await back_on_redis(c, run.marks["restart"], t0)
        for _ in range(5):  # 5 of the probe user's 20 a minute, kept by Redis across the hang
            (await predict(c, ids, "probe")).raise_for_status()
        await at(13)
        note("SIGSTOP redis")
        run.marks["pause"] = time.monotonic() - t0
        server.signal(signal.SIGSTOP)
        await at(16)
        server.signal(signal.SIGCONT)
        note("SIGCONT redis")
        run.marks["resume"] = time.monotonic() - t0
        run.marks["recovered_after_resume"] = await back_on_redis(c, run.marks["resume"], t0)
        health = (await c.get("/health")).json()
        run.marks["health_degraded_after"] = float(health["rate_limiter"]["degraded"])
        note("probe user")
        probe = [
            (
                await c.post(
                    ids["probe_url"], json={"input": [ROW]}, headers={"X-API-Key": ids["probe_key"]}
                )
            ).status_code  # fmt: skip
            for _ in range(30)
        ]
        run.marks["probe_accepted"] = probe.count(200)
        run.marks["end"] = end
        await asyncio.gather(*loops)
    return run


def report(run: Run, log_text: str, clients: int, timeout_s: float) -> int:
    m = run.marks
    bad = [s for s in run.samples if s.status == 0 or s.status >= 500]
    refused = sum(1 for s in run.samples if s.status == 429)
    print(f"quota_redis_outage: {clients} clients, INFERX_REDIS_TIMEOUT_S={timeout_s}")
    print(f"  requests {len(run.samples)}, failed {len(bad)}, refused (429) {refused}")
    phases = [
        ("before", 0, m["kill"]),
        ("redis killed", m["kill"], m["restart"]),
        ("after restart", m["restart"], m["pause"]),
        ("redis hung", m["pause"], m["resume"]),
        ("after resume", m["resume"], m["end"]),
    ]
    for name, start, end in phases:
        print(f"  {name:14s} [{start:5.1f}-{end:5.1f} s] {phase_stats(run, start, end)}")
    print(f"  quotas back on Redis {m['recovered_after_restart']:.2f} s after the restart")
    print(f"  quotas back on Redis {m['recovered_after_resume']:.2f} s after SIGCONT")
    print(
        f"  probe user (20/min, 5 used before the hang): {int(m['probe_accepted'])} of 30 "
        "accepted after the hang (15 = Redis's count was kept and enforced)"
    )
    print(f"  /health rate_limiter.degraded at the end: {bool(m['health_degraded_after'])}")
    print("  quota log events (s since the load started):")
    for line in log_text.splitlines():
        if '"quotas.redis_' not in line:
            continue
        event = json.loads(line)
        at = datetime.fromisoformat(event["timestamp"]).timestamp() - m["wall0"]
        print(f"    {at:5.1f} s  {event['event']}  {event.get('error', '')}")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--redis-timeout", type=float, default=0.25)
    args = parser.parse_args()
    if installed() is None:
        sys.exit("redis-server is not installed (Debian package redis-server)")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    with tempfile.TemporaryDirectory(prefix="inferx-bench-") as tmp:
        workdir = Path(tmp)
        model = workdir / "iris.pkl"
        x, y = load_iris(return_X_y=True)
        model.write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(x, y)))
        server = RedisServer(workdir)
        server.start()
        port = free_port()
        env = env_for(workdir / "data", server.url, args.redis_timeout)
        cli = [sys.executable, "-m", "inferx.cli"]
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run(
            [*cli, "users", "create-admin", "--email", "root@bench.dev", "--password-stdin"],
            env=env,
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        log_path = workdir / "server.log"
        with log_path.open("wb") as log:
            api = subprocess.Popen(
                [*cli, "serve", "--port", str(port)], env=env, stdout=log, stderr=log
            )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or api.poll() is not None:
                    raise RuntimeError("inferx serve did not start:\n" + log_path.read_text())
                time.sleep(0.1)
            run = asyncio.run(drive(base, server, model, args.clients))
        finally:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(timeout=30)
            except subprocess.TimeoutExpired:
                api.kill()
            server.stop()
        return report(run, log_path.read_text(), args.clients, args.redis_timeout)


if __name__ == "__main__":
    sys.exit(main())
