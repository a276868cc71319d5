"""Load benchmark of the prediction path: InferX against its peers, one run, one load generator.

Drives, with the same ``wrk`` (1 thread, a Lua script that POSTs a different row per request):

- ``inferx``: ``inferx serve`` with embedded defaults (SQLite in a temp data dir), API-key auth,
  prediction logging (always on) and quotas, for a user whose limits never refuse.
- ``inferx-redis``: the same, with a private redis-server (started here, no persistence):
  quotas, shared state and the result cache in Redis.
- ``naive-def`` / ``naive-async``: FastAPI that ``joblib.load``s the model and calls
  ``predict`` per request, as a ``def`` and an ``async def`` route (bench/naive_app.py).
- ``mlserver-*``: MLServer 1.7.1 + mlserver-sklearn in its own virtualenv
  (bench/.venv-mlserver, created on first use): one process (httptools, no batching), and
  adaptive batching (32 rows / 5 ms) with parallel_workers 0 and 1; ``mlserver-best`` is the
  best of them per point.
- ``ceiling-asgi``: a bare ASGI app answering constant JSON (the HTTP ceiling).

Models: iris LogisticRegression (``lr``) and a 100-tree RandomForest on 20 features (``rf``),
trained here with fixed seeds. Every request carries a different row, so InferX's result cache
never answers (its hit rate is printed). Concurrency 1, 16, 64; a warm-up, then 10 s per point;
two rounds; medians. Prints and writes requests/s, p50, p99 and errors per point and the ratios
of InferX to each peer (bench/results/<timestamp>.json and .md).

Run: ``bench/run.sh`` or ``.venv/bin/python bench/predict_load.py [--quick]``; ``--help`` for
the knobs. Peers that cannot be started are skipped, and the output says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import redis_server
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LUA = BENCH / "post.lua"
MLSERVER_VENV = BENCH / ".venv-mlserver"
MLSERVER_PINS = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", "httptools")
MODELS = ("lr", "rf")
PEERS = ("inferx", "inferx-redis", "naive", "mlserver", "ceiling")
INFERX_CONFIGS = ("inferx", "inferx-redis")  # the rows measured against the peers
MLSERVER_CONFIGS = ("mlserver-1proc", "mlserver-batch-pw0", "mlserver-batch-pw1")
# Batching configurations wait up to max_batch_time for company: a lone client only pays it.
BATCHING_CONFIGS = ("mlserver-batch-pw0", "mlserver-batch-pw1")
ROWS = 60_000  # distinct rows per model, far more than the result cache holds (10,000)
WRK_TIMEOUT_S = 10
CEILING = "ceiling-asgi"  # model-independent: measured with one model's bodies only

_children: list[subprocess.Popen[bytes]] = []
NICE: list[str] = []  # ["nice", "-n", "-5"] with --nice -5: servers and wrk alike


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)  # noqa: T201


# -- processes -------------------------------------------------------------------------------


def spawn(cmd: list[str], *, env: dict[str, str], log_path: Path, cwd: Path | None = None) -> Any:
    """Start a server in a session of its own, so that it and its children die together."""
    out = log_path.open("ab")
    proc = subprocess.Popen(
        [*NICE, *cmd],
        env=env,
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    _children.append(proc)
    return proc


def kill(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM the process group we started (SIGINT first: MLServer ignores SIGTERM), then
    SIGKILL what is left of it."""
    tree = descendants(proc.pid)[1:] if proc.poll() is None else []
    if proc.poll() is None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s / 2)
                break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children (workers) that outlived their parent
    for pid in tree:  # descendants in sessions of their own (InferX's sandboxed workers)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    if proc in _children:
        _children.remove(proc)


def kill_all() -> None:
    for proc in list(_children):
        kill(proc, grace_s=2.0)


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds: user + system, with reaped children)."""
    ticks = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / ticks)
    return table


def descendants(root: int, table: dict[int, tuple[int, float]] | None = None) -> list[int]:
    """``root`` and every process below it (InferX's workers run in sessions of their own)."""
    table = table if table is not None else _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
        todo += children.get(pid, [])
    return found


def tree_cpu_s(root: int) -> float:
    """CPU seconds of ``root`` and its descendants."""
    table = _proc_table()
    return sum(table[pid][1] for pid in descendants(root, table))


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting for I/O)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(server: Server, limit_s: float, threshold: float = 0.25) -> float:
    """Wait (up to ``limit_s``) until other work on the box uses < ``threshold`` cores over
    half a second; returns the foreign load last seen. Other sessions share this machine."""
    deadline = time.monotonic() + limit_s
    while True:
        busy0, cpu0, t0 = machine_busy_s(), server.cpu_s(), time.monotonic()
        time.sleep(0.5)
        wall = time.monotonic() - t0
        foreign = (machine_busy_s() - busy0 - (server.cpu_s() - cpu0)) / wall
        if foreign < threshold or time.monotonic() >= deadline:
            return foreign


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"exited with {proc.returncode} before it was ready:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {timeout_s:.0f} s ({url})")


# -- tools -----------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk not found: installing it with apt-get (Debian package 'wrk')")
    for cmd in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"]):
        subprocess.run(cmd, check=False, capture_output=True, timeout=300)
        if cmd[1] == "update":
            subprocess.run(
                ["apt-get", "install", "-y", "wrk"], check=False, capture_output=True, timeout=300
            )
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit("wrk is not installed and `apt-get install -y wrk` failed: install wrk and rerun")


def ensure_mlserver() -> tuple[Path | None, str]:
    """The MLServer virtualenv's python, creating the venv on first use; or None and why."""
    python = MLSERVER_VENV / "bin" / "python"
    marker = MLSERVER_VENV / ".bench-ok"
    pins = (*MLSERVER_PINS, f"scikit-learn=={_version('sklearn')}")
    if marker.exists() and marker.read_text() == "\n".join(pins):
        return python, "ok"
    log(f"creating {MLSERVER_VENV.relative_to(REPO)} with {' '.join(pins)} (about 1-2 minutes)")
    shutil.rmtree(MLSERVER_VENV, ignore_errors=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(MLSERVER_VENV)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        r = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not create the MLServer virtualenv: {exc}"
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout).splitlines() if "ignored" not in ln]
        return None, "pip install of MLServer failed: " + " | ".join(lines[-6:])
    marker.write_text("\n".join(pins))
    return python, "ok"


def _version(module: str) -> str:
    return str(__import__(module).__version__)


# -- models and request bodies ---------------------------------------------------------------


@dataclass
class ModelFiles:
    name: str
    path: Path  # joblib file, uploaded to InferX and loaded by the peers
    bodies: Path  # {"input": [[...]]}: InferX, naive, ceiling
    v2_bodies: Path  # Open Inference Protocol: MLServer
    features: int


def _unique_rows(X: np.ndarray, n: int, decimals: int) -> np.ndarray:
    X = np.round(X, decimals)
    _, first = np.unique(X, axis=0, return_index=True)
    X = X[np.sort(first)]
    if len(X) < n:
        raise RuntimeError(f"only {len(X)} distinct rows, need {n}")
    return X[:n]


def build_models(work: Path, rows: int) -> dict[str, ModelFiles]:
    rng = np.random.default_rng(0)
    X_iris, y_iris = load_iris(return_X_y=True)
    lr = LogisticRegression(max_iter=1000).fit(X_iris, y_iris)
    # Iris-like rows: real rows plus a little noise, every one distinct.
    picks = X_iris[rng.integers(0, len(X_iris), rows * 2)]
    lr_rows = _unique_rows(np.abs(picks + rng.normal(0, 0.15, picks.shape)), rows, 3)

    X_rf, y_rf = make_classification(
        n_samples=2_000 + rows, n_features=20, n_informative=10, random_state=0
    )
    rf = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    rf.fit(X_rf[:2_000], y_rf[:2_000])
    rf_rows = _unique_rows(X_rf[2_000:], rows, 5)

    out = {}
    for name, model, X in (("lr", lr, lr_rows), ("rf", rf, rf_rows)):
        path = work / f"{name}.joblib"
        joblib.dump(model, path)
        bodies = work / f"{name}.bodies"
        v2 = work / f"{name}.v2.bodies"
        width = X.shape[1]
        with bodies.open("w") as plain, v2.open("w") as oip:
            for row in X.tolist():
                plain.write(json.dumps({"input": [row]}, separators=(",", ":")) + "\n")
                tensor = {"name": "input-0", "shape": [1, width], "datatype": "FP64", "data": row}
                oip.write(json.dumps({"inputs": [tensor]}, separators=(",", ":")) + "\n")
        out[name] = ModelFiles(name, path, bodies, v2, width)
    return out


# -- servers ---------------------------------------------------------------------------------


@dataclass
class Endpoint:
    config: str
    model: str
    path: str
    bodies: Path
    api_key: str = ""


class Server:
    """One server process (tree) serving one or more configs for both models."""

    name = "server"
    configs: tuple[str, ...] = ()  # the configs (rows of the table) this server provides
    startup_timeout_s = 60.0

    def __init__(self, work: Path, models: dict[str, ModelFiles]) -> None:
        self.work = work
        self.models = models
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = work / f"{self.name}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        raise NotImplementedError

    def endpoints(self, model: str) -> list[Endpoint]:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            kill(self.proc)
            self.proc = None

    def cpu_s(self) -> float:
        return tree_cpu_s(self.proc.pid) if self.proc is not None else 0.0

    def after_load(self) -> dict[str, Any]:
        """Anything worth reporting once the load on this server is over."""
        return {}


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERX_", "MLSERVER_"))}
    env.update(extra)
    return env


class Uvicorn(Server):
    app = ""

    def start(self) -> None:
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--app-dir",
            str(BENCH),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        env = _clean_env(BENCH_MODEL_DIR=str(self.work / "models"))
        self.proc = spawn(cmd, env=env, log_path=self.log_path)
        wait_http(self.ready_url(), self.proc, self.startup_timeout_s, self.log_path)

    def ready_url(self) -> str:
        return self.base + "/openapi.json"


class Naive(Uvicorn):
    name = "naive"
    configs = ("naive-def", "naive-async")
    app = "naive_app:app"

    def endpoints(self, model: str) -> list[Endpoint]:
        bodies = self.models[model].bodies
        return [
            Endpoint("naive-def", model, f"/def/{model}", bodies),
            Endpoint("naive-async", model, f"/async/{model}", bodies),
        ]


class Ceiling(Uvicorn):
    name = "ceiling"
    configs = (CEILING,)
    app = "ceiling_app:app"

    def ready_url(self) -> str:
        return self.base + "/"

    def endpoints(self, model: str) -> list[Endpoint]:
        # Model-independent: measured once, with the larger (rf) bodies when rf is in the run.
        if model != ("rf" if "rf" in self.models else next(iter(self.models))):
            return []
        return [Endpoint("ceiling-asgi", model, "/predict", self.models[model].bodies)]


class MLServer(Server):
    def __init__(
        self,
        work: Path,
        models: dict[str, ModelFiles],
        python: Path,
        config: str,
        *,
        parallel_workers: int,
        batching: bool,
    ) -> None:
        self.name = config
        self.configs = (config,)
        super().__init__(work, models)
        self.python = python
        self.config = config
        self.parallel_workers = parallel_workers
        self.batching = batching

    def start(self) -> None:
        self.port = free_port()
        repo = self.work / self.config
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir()
        (repo / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": self.port,
                    "grpc_port": free_port(),
                    "metrics_port": free_port(),
                    "parallel_workers": self.parallel_workers,
                    "debug": False,  # no access log
                    "load_models_at_startup": True,
                }
            )
        )
        for name, files in self.models.items():
            d = repo / name
            d.mkdir()
            shutil.copy(files.path, d / "model.joblib")
            settings: dict[str, Any] = {
                "name": name,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
            if self.batching:
                settings.update(max_batch_size=32, max_batch_time=0.005)
            (d / "model-settings.json").write_text(json.dumps(settings))
        cmd = [str(self.python.parent / "mlserver"), "start", str(repo)]
        env = _clean_env()
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = spawn(cmd, env=env, log_path=self.log_path, cwd=repo)
        for name in self.models:
            ready = f"{self.base}/v2/models/{name}/ready"
            wait_http(ready, self.proc, self.startup_timeout_s, self.log_path)

    def endpoints(self, model: str) -> list[Endpoint]:
        path = f"/v2/models/{model}/infer"
        return [Endpoint(self.config, model, path, self.models[model].v2_bodies)]


class InferX(Server):
    name = "inferx"
    configs = ("inferx",)
    password = "bench password 1"

    def __init__(
        self, work: Path, models: dict[str, ModelFiles], extra_env: dict[str, str] | None = None
    ) -> None:
        super().__init__(work, models)
        self.extra_env = extra_env or {}  # e.g. settings for an ablation (profile_inferx.py)
        self.api_key = ""
        self.model_ids: dict[str, str] = {}
        self.setup: dict[str, Any] = {}

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "inferx.cli", *args]

    def backend_env(self) -> dict[str, str]:
        """Settings of the services InferX runs on besides its data dir (none: embedded)."""
        return {}

    def start(self) -> None:
        self.port = free_port()
        data = self.work / f"{self.name}-data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        # Cheaper password hashing only speeds up the set-up (admin, register, logins): the
        # prediction path authenticates by API key (SHA-256, cached) and never hashes one.
        env = _clean_env(
            INFERX_DATA_DIR=str(data),
            INFERX_ARGON2_MEMORY_KIB="8192",
            INFERX_ARGON2_TIME_COST="1",
            **self.backend_env(),
            **self.extra_env,
        )
        admin = "bench-admin@example.com"
        r = subprocess.run(
            self._cli("users", "create-admin", "--email", admin, "--password-stdin"),
            env=env,
            input=self.password + "\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode != 0:
            raise RuntimeError(f"inferx users create-admin failed: {r.stderr[-2000:]}")
        self.proc = spawn(
            self._cli("serve", "--port", str(self.port), "--data-dir", str(data)),
            env=env,
            log_path=self.log_path,
        )
        wait_http(self.base + "/health/ready", self.proc, self.startup_timeout_s, self.log_path)
        with httpx.Client(base_url=self.base + "/api/v1", timeout=60) as c:
            self._configure(c, admin)

    def _configure(self, c: httpx.Client, admin: str) -> None:
        def ok(r: httpx.Response, what: str) -> Any:
            if r.status_code >= 300:
                raise RuntimeError(f"InferX {what}: {r.status_code} {r.text[:500]}")
            return r.json() if r.content else None

        def login(email: str) -> dict[str, str]:
            body = {"email": email, "password": self.password}
            token = ok(c.post("/auth/login", json=body), "login")["access_token"]
            return {"Authorization": f"Bearer {token}"}

        email = "bench@example.com"
        ok(c.post("/auth/register", json={"email": email, "password": self.password}), "register")
        user = login(email)
        admin_auth = login(admin)
        me = ok(c.get("/auth/me", headers=user), "me")
        # Limits that never refuse: the enterprise tier (no daily cap by default) and a
        # per-minute override far above anything this box can serve.
        patch: dict[str, Any] = {"tier": "enterprise", "quota_per_minute": 1_000_000_000}
        updated = ok(c.patch(f"/admin/users/{me['id']}", json=patch, headers=admin_auth), "patch")
        usage = c.get("/usage", headers=user)
        if usage.status_code == 200 and usage.json().get("daily", {}).get("limit") is not None:
            patch["quota_per_day"] = 1_000_000_000
            updated = ok(
                c.patch(f"/admin/users/{me['id']}", json=patch, headers=admin_auth), "patch"
            )
        self.setup["user"] = {
            k: updated.get(k) for k in ("tier", "quota_per_minute", "quota_per_day")
        }
        self.setup["usage_endpoint"] = usage.status_code
        key = ok(c.post("/api-keys", json={"name": "bench"}, headers=user), "api key")["key"]
        self.api_key = key
        for name, files in self.models.items():
            r = c.post(
                "/models/upload",
                files={"file": (files.path.name, files.path.read_bytes())},
                data={"name": f"bench-{name}"},
                headers=user,
            )
            self.model_ids[name] = ok(r, f"upload {name}")["id"]
            first = json.loads(files.bodies.open().readline())
            r = c.post(f"/predict/{self.model_ids[name]}", json=first, headers={"X-API-Key": key})
            ok(r, f"first prediction on {name}")

    def endpoints(self, model: str) -> list[Endpoint]:
        path = f"/api/v1/predict/{self.model_ids[model]}"
        return [Endpoint(self.name, model, path, self.models[model].bodies, self.api_key)]

    def after_load(self) -> dict[str, Any]:
        text = httpx.get(self.base + "/metrics", timeout=10).text
        cache = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'^inferx_result_cache_total\{outcome="(\w+)"\} (\S+)', text, re.M)
        }
        dropped = re.search(r"^inferx_prediction_log_dropped_total (\S+)", text, re.M)
        rows_sum = re.search(r"^inferx_batch_rows_sum (\S+)", text, re.M)
        rows_count = re.search(r"^inferx_batch_rows_count (\S+)", text, re.M)
        hits, misses = cache.get("hit", 0.0), cache.get("miss", 0.0)
        bypassed = cache.get("bypass", 0.0)  # inputs that never repeat: the cache steps aside
        info: dict[str, Any] = {
            "result_cache_hits": int(hits),
            "result_cache_misses": int(misses),
            "result_cache_bypassed": int(bypassed),
            "result_cache_hit_rate": (
                hits / (hits + misses + bypassed) if hits + misses + bypassed else None
            ),
            "prediction_log_dropped": int(float(dropped.group(1))) if dropped else None,
            # inferx_batch_rows is observed once per request (the size of the call it rode
            # in), so this is the request-weighted mean batch size.
            "mean_batch_rows_per_request": (
                float(rows_sum.group(1)) / float(rows_count.group(1))
                if rows_sum and rows_count and float(rows_count.group(1))
                else None
            ),
        }
        time.sleep(2.5)  # the prediction log flushes every second
        r = httpx.get(
            self.base + "/api/v1/predictions",
            params={"limit": 1},
            headers={"X-API-Key": self.api_key},
            timeout=60,
        )
        if r.status_code == 200:
            info["predictions_logged"] = r.json().get("total")
        health = httpx.get(self.base + "/health", timeout=10)
        if health.status_code == 200:
            body = health.json()
            quotas = body.get("quotas") or {}
            info["shared_state"] = body.get("mode", {}).get("shared_state")
            # Quota checks that fell back to the in-process limiter (Redis slow or down).
            info["quota_backend"] = quotas.get("backend")
            info["quota_fallback_calls"] = quotas.get("fallback_calls")
        return info


class InferXRedis(InferX):
    """InferX as ``inferx``, with a private redis-server (loopback, no persistence) for its
    quotas, shared state and result cache: started before InferX and killed after it."""

    name = "inferx-redis"
    configs = ("inferx-redis",)

    def __init__(
        self, work: Path, models: dict[str, ModelFiles], extra_env: dict[str, str] | None = None
    ) -> None:
        super().__init__(work, models, extra_env)
        self.redis: SpawnedRedis | None = None
        self.redis_prefix = ""

    def start(self) -> None:
        self.redis = SpawnedRedis(self.work)
        self.redis.start()
        self.redis_prefix = f"bench-{secrets.token_hex(4)}:"  # fresh per start, so per run
        super().start()

    def backend_env(self) -> dict[str, str]:
        assert self.redis is not None
        return {"INFERX_REDIS_URL": self.redis.url, "INFERX_REDIS_PREFIX": self.redis_prefix}

    def stop(self) -> None:
        super().stop()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def cpu_s(self) -> float:
        """InferX's process tree and Redis: both work for every request."""
        redis_s = tree_cpu_s(self.redis.proc.pid) if self.redis and self.redis.proc else 0.0
        return super().cpu_s() + redis_s

    def after_load(self) -> dict[str, Any]:
        info = super().after_load()
        assert self.redis is not None
        with self.redis.client() as client:
            commands = int(client.info("stats")["total_commands_processed"])
            match = f"{self.redis_prefix}rc:*"  # RedisResultCache's keys
            info["redis_result_cache_keys"] = sum(1 for _ in client.scan_iter(match, 1000))
        predictions = (
            info["result_cache_hits"] + info["result_cache_misses"] + info["result_cache_bypassed"]
        )
        # Set-up and this report included: a little above the per-prediction cost.
        per = round(commands / predictions, 1) if predictions else None
        info["redis_commands_per_prediction"] = per
        return info


class SpawnedRedis(redis_server.RedisServer):
    """The shared bench redis-server, started and killed like every other process here."""

    def launch(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = spawn(
            cmd, env=_clean_env(), log_path=self.workdir / "redis.log"
        )
        return proc

    def stop(self) -> None:
        if self.proc is not None:
            kill(self.proc)
            self.proc = None


# -- load generation -------------------------------------------------------------------------


@dataclass
class Point:
    round: int
    config: str
    model: str
    conns: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    requests: int
    duration_s: float
    server_cpu_us_per_req: float | None
    server_cores: float
    wrk_cores: float
    foreign_cores: float
    error_detail: dict[str, int] = field(default_factory=dict)


def raw_histogram(out: dict[str, Any], conns: int) -> list[tuple[int, int]]:
    """Undo wrk's coordinated-omission correction (stats_correct): wrk added, for each
    recorded latency n >= 2e, synthetic samples at n - e, n - 2e, ... (all > e), where
    e = runtime_us / (requests / connections). So corrected[m] = raw[m] + corrected[m + e]
    for m > e, and raw[m] = corrected[m] otherwise."""
    corrected = {int(v): int(c) for v, c in out["hist"]}
    per_conn = out["requests"] // conns
    if per_conn == 0:
        return sorted(corrected.items())
    e = out["duration_us"] // per_conn
    raw = {}
    for m, count in corrected.items():
        n = count - corrected.get(m + e, 0) if m > e else count
        if n > 0:
            raw[m] = n
    return sorted(raw.items())


def percentile(hist: list[tuple[int, int]], p: float) -> float | None:
    total = sum(c for _, c in hist)
    if not total:
        return None
    rank = p / 100 * total
    seen = 0
    for value, count in hist:
        seen += count
        if seen >= rank:
            return value / 1000
    return hist[-1][0] / 1000


class Load:
    def __init__(self, wrk: str, work: Path, pin: str | None) -> None:
        self.wrk = wrk
        self.work = work
        self.pin = pin
        self.offsets: dict[str, int] = {}  # per model: rows sent so far (never reuse soon)

    def run(self, server: Server, ep: Endpoint, conns: int, seconds: float) -> dict[str, Any]:
        out_path = self.work / "wrk-out.json"
        out_path.unlink(missing_ok=True)
        env = dict(
            os.environ,
            BENCH_BODIES=str(ep.bodies),
            BENCH_PATH=ep.path,
            BENCH_API_KEY=ep.api_key,
            BENCH_OFFSET=str(self.offsets.get(ep.model, 1)),  # row 1: InferX's setup check
            BENCH_OUT=str(out_path),
        )
        cmd = [
            self.wrk,
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={WRK_TIMEOUT_S}s",
            "-s",
            str(LUA),
            server.base,
        ]
        if self.pin:
            cmd = ["taskset", "-c", self.pin, *cmd]
        cmd = [*NICE, *cmd]
        cpu0, busy0, wrk0 = server.cpu_s(), machine_busy_s(), children_cpu_s()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _children.append(proc)
        try:
            stdout, _ = proc.communicate(timeout=seconds + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _children.remove(proc)
        wall = time.monotonic() - t0
        cpu = server.cpu_s() - cpu0
        busy = machine_busy_s() - busy0
        wrk_cpu = children_cpu_s() - wrk0
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"wrk failed ({proc.returncode}): {stdout.decode()[-1000:]}")
        out = json.loads(out_path.read_text())
        # Skip the rows of requests still in flight when wrk stopped: the server may have
        # answered (and cached) them after wrk stopped counting.
        self.offsets[ep.model] = self.offsets.get(ep.model, 1) + out["requests"] + 2 * conns
        out["server_cpu_s"] = cpu
        out["wall_s"] = wall
        out["wrk_cores"] = wrk_cpu / wall
        # Busy cores that were neither the server nor wrk: other work on the box (noise).
        out["foreign_cores"] = (busy - cpu - wrk_cpu) / wall
        return out

    def point(self, rnd: int, server: Server, ep: Endpoint, conns: int, seconds: float) -> Point:
        out = self.run(server, ep, conns, seconds)
        hist = raw_histogram(out, conns)
        duration = out["duration_us"] / 1e6
        requests = out["requests"]
        errors = out["errors"]
        # wrk counts non-2xx/3xx answers in "status"; all kinds are failures here.
        return Point(
            round=rnd,
            config=ep.config,
            model=ep.model,
            conns=conns,
            rps=requests / duration if duration else 0.0,
            p50_ms=percentile(hist, 50),
            p99_ms=percentile(hist, 99),
            errors=sum(errors.values()),
            requests=requests,
            duration_s=round(duration, 2),
            server_cpu_us_per_req=round(out["server_cpu_s"] / requests * 1e6) if requests else None,
            server_cores=round(out["server_cpu_s"] / out["wall_s"], 2),
            wrk_cores=round(out["wrk_cores"], 2),
            foreign_cores=round(out["foreign_cores"], 2),
            error_detail={k: v for k, v in errors.items() if v},
        )


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Plan:
    rounds: int
    seconds: float
    warmup_s: float
    conns: tuple[int, ...]
    models: tuple[str, ...]
    peers: tuple[str, ...]
    batching_at_c1: bool
    ref_rounds: int  # rounds of the reference configs (naive-def, ceiling)
    quiet_wait_s: float = 0.0  # before each point, wait up to this long for a quiet box


def source_state() -> str:
    """The commit InferX was measured at, and whether src/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%h %cd", "--date=iso"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + uncommitted changes in src/" if dirty else "")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def build_servers(
    plan: Plan, work: Path, models: dict[str, ModelFiles], skipped: dict[str, str]
) -> list[Server]:
    servers: list[Server] = []
    if "inferx" in plan.peers:
        servers.append(InferX(work, models))
    if "inferx-redis" in plan.peers:
        if redis_server.installed() is None:
            why = "redis-server is not installed (Debian package redis-server)"
            skipped["inferx-redis"] = why
            log(f"SKIPPING inferx-redis: {why}")
        else:
            servers.append(InferXRedis(work, models))
    if "naive" in plan.peers:
        servers.append(Naive(work, models))
    if "mlserver" in plan.peers:
        python, why = ensure_mlserver()
        if python is None:
            for config in MLSERVER_CONFIGS:
                skipped[config] = why
            log(f"SKIPPING MLServer: {why}")
        else:
            servers += [
                MLServer(
                    work, models, python, "mlserver-1proc", parallel_workers=0, batching=False
                ),
                MLServer(
                    work, models, python, "mlserver-batch-pw0", parallel_workers=0, batching=True
                ),
                MLServer(
                    work, models, python, "mlserver-batch-pw1", parallel_workers=1, batching=True
                ),
            ]
    if "ceiling" in plan.peers:
        servers.append(Ceiling(work, models))
    return servers


def run(plan: Plan, work: Path, pin: str | None) -> dict[str, Any]:
    wrk = ensure_wrk()
    log(f"training models and writing {ROWS:,} distinct rows per model")
    models = {k: v for k, v in build_models(work, ROWS).items() if k in plan.models}
    (work / "models").mkdir()
    for files in models.values():
        shutil.copy(files.path, work / "models" / files.path.name)
    skipped: dict[str, str] = {}
    servers = build_servers(plan, work, models, skipped)
    load = Load(wrk, work, pin)
    points: list[Point] = []
    extras: dict[str, Any] = {}
    reference = {"naive-def", CEILING}
    for rnd in range(1, plan.rounds + 1):
        order = servers if rnd % 2 else list(reversed(servers))
        for server in order:
            if server.name in skipped or not any(
                c not in reference or rnd <= plan.ref_rounds for c in server.configs
            ):
                continue
            log(f"round {rnd}: starting {server.name}")
            t0 = time.monotonic()
            try:
                server.start()
            except Exception as exc:  # a peer that cannot start is skipped, and said so
                skipped[server.name] = f"could not start: {exc}"[:2000]
                log(f"SKIPPING {server.name}: {str(exc)[:500]}")
                server.stop()
                continue
            log(f"  ready in {time.monotonic() - t0:.1f} s")
            try:
                for model in plan.models:
                    eps = [
                        ep
                        for ep in server.endpoints(model)
                        if ep.config not in reference or rnd <= plan.ref_rounds
                    ]
                    if not eps:
                        continue
                    # Warm-up: model loads, caches, pools, batchers, connections.
                    for i, ep in enumerate(eps):
                        load.run(server, ep, 16, plan.warmup_s if i == 0 else 1.0)
                    for conns in plan.conns:
                        for ep in eps:
                            if (
                                conns == 1
                                and ep.config in BATCHING_CONFIGS
                                and not plan.batching_at_c1
                            ):
                                continue
                            if plan.quiet_wait_s:
                                wait_for_quiet(server, plan.quiet_wait_s)
                            p = load.point(rnd, server, ep, conns, plan.seconds)
                            points.append(p)
                            log(
                                f"  {p.config:<20} {p.model} c={p.conns:<3} {p.rps:9.0f} req/s"
                                f"  p50 {_ms(p.p50_ms)}  p99 {_ms(p.p99_ms)}  errors {p.errors}"
                                f"  cpu {p.server_cpu_us_per_req} us/req"
                            )
                info = server.after_load()
                if info:
                    extras.setdefault(server.name, []).append({"round": rnd, **info})
                    log(f"  {server.name}: {info}")
            finally:
                server.stop()
    inferx_setup = next((s.setup for s in servers if isinstance(s, InferX)), None)
    return {"points": points, "skipped": skipped, "extras": extras, "inferx_setup": inferx_setup}


def _ms(v: float | None) -> str:
    return "   -   " if v is None else f"{v:7.2f}"


# -- summary ---------------------------------------------------------------------------------


@dataclass
class Row:
    config: str
    model: str
    conns: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    rounds: int
    spread: float  # (max - min) / median of requests/s over rounds
    server_cpu_us_per_req: float | None
    server_cores: float
    foreign_cores: float  # max over rounds: CPU used by other work on the box
    best_of: str | None = None


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(points: list[Point]) -> list[Row]:
    groups: dict[tuple[str, str, int], list[Point]] = {}
    for p in points:
        groups.setdefault((p.config, p.model, p.conns), []).append(p)
    rows = []
    for (config, model, conns), ps in groups.items():
        rps = [p.rps for p in ps]
        med = statistics.median(rps)
        rows.append(
            Row(
                config=config,
                model=model,
                conns=conns,
                rps=med,
                p50_ms=_median([p.p50_ms for p in ps]),
                p99_ms=_median([p.p99_ms for p in ps]),
                errors=sum(p.errors for p in ps),
                rounds=len(ps),
                spread=(max(rps) - min(rps)) / med if med else 0.0,
                server_cpu_us_per_req=_median([p.server_cpu_us_per_req for p in ps]),
                server_cores=statistics.median([p.server_cores for p in ps]),
                foreign_cores=max(p.foreign_cores for p in ps),
            )
        )
    # MLServer's best configuration per point (by requests/s).
    for model in MODELS:
        for conns in sorted({r.conns for r in rows}):
            candidates = [
                r
                for r in rows
                if r.config in MLSERVER_CONFIGS and r.model == model and r.conns == conns
            ]
            if candidates:
                best = max(candidates, key=lambda r: r.rps)
                rows.append(
                    Row(**{**asdict(best), "config": "mlserver-best", "best_of": best.config})
                )
    order = [
        *INFERX_CONFIGS,
        "naive-def",
        "naive-async",
        "mlserver-best",
        *MLSERVER_CONFIGS,
        "ceiling-asgi",
    ]
    rows.sort(key=lambda r: (MODELS.index(r.model), order.index(r.config), r.conns))
    return rows


RATIO_PEERS = ("naive-def", "naive-async", "mlserver-best", "ceiling-asgi")


def ratios(rows: list[Row]) -> list[dict[str, Any]]:
    index = {(r.config, r.model, r.conns): r for r in rows}
    out = []
    for r in rows:
        if r.config not in INFERX_CONFIGS:
            continue
        entry: dict[str, Any] = {"config": r.config, "model": r.model, "conns": r.conns}
        for peer in RATIO_PEERS:
            other = index.get((peer, r.model, r.conns)) or next(
                (o for o in rows if o.config == peer == CEILING and o.conns == r.conns), None
            )
            entry[f"rps_vs_{peer}"] = round(r.rps / other.rps, 2) if other and other.rps else None
            entry[f"p50_vs_{peer}"] = (
                round(r.p50_ms / other.p50_ms, 2)
                if other and other.p50_ms and r.p50_ms is not None
                else None
            )
        out.append(entry)
    return out


TARGETS = (  # issue 4: name, model, conns, peer, metric, bound
    ("rf c=64 req/s vs MLServer best", "rf", 64, "mlserver-best", "rps", 1.5),
    ("rf c=64 req/s vs naive async def", "rf", 64, "naive-async", "rps", 5.0),
    ("lr c=64 req/s vs MLServer best", "lr", 64, "mlserver-best", "rps", 1.2),
    ("rf c=1 p50 vs naive async def", "rf", 1, "naive-async", "p50_ms", 1.1),
    ("lr c=1 p50 vs naive async def", "lr", 1, "naive-async", "p50_ms", 1.1),
)


def targets(rows: list[Row]) -> list[dict[str, Any]]:
    """Each target for each InferX config that ran (``inferx`` alone when none did)."""
    index = {(r.config, r.model, r.conns): r for r in rows}
    configs = [c for c in INFERX_CONFIGS if any(r.config == c for r in rows)] or ["inferx"]
    out = []
    for name, model, conns, peer, metric, bound in TARGETS:
        for config in configs:
            mine, other = index.get((config, model, conns)), index.get((peer, model, conns))
            value = None
            if mine and other:
                a, b = getattr(mine, metric), getattr(other, metric)
                value = round(a / b, 2) if a is not None and b else None
            met = None
            if value is not None:
                met = value >= bound if metric == "rps" else value <= bound
            want = f">= {bound}x" if metric == "rps" else f"<= {bound}x"
            out.append({"target": name, "config": config, "ratio": value, "want": want, "met": met})
    return out


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# Prediction load benchmark, {m['date']}",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}. Generator: {report['generator']}.",
        f"Plan: {report['plan_text']}",
        f"InferX source: {report['source']['at_start']} (at the end: "
        f"{report['source']['at_end']}).",
        "",
        "| config | model | conns | req/s | p50 ms | p99 ms | errors | rounds | spread "
        "| server CPU µs/req | server cores | foreign cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        name = r["config"] + (f" ({r['best_of']})" if r.get("best_of") else "")
        lines.append(
            f"| {name} | {r['model']} | {r['conns']} | {r['rps']:.0f} | {_cell(r['p50_ms'])} "
            f"| {_cell(r['p99_ms'])} | {r['errors']} | {r['rounds']} | {r['spread']:.0%} "
            f"| {_cell(r['server_cpu_us_per_req'], 0)} | {r['server_cores']:.2f} "
            f"| {r['foreign_cores']:.2f} |"
        )
    lines += [
        "",
        "InferX relative to each peer (requests/s ratio; p50 ratio, lower is better):",
        "",
        "| config | model | conns | "
        + " | ".join(f"× {p} req/s | p50 ÷ {p}" for p in RATIO_PEERS)
        + " |",
        "|---|---|---:|" + "---:|" * (2 * len(RATIO_PEERS)),
    ]
    for e in report["ratios"]:
        cells = " | ".join(
            f"{_cell(e[f'rps_vs_{p}'])} | {_cell(e[f'p50_vs_{p}'])}" for p in RATIO_PEERS
        )
        lines.append(f"| {e['config']} | {e['model']} | {e['conns']} | {cells} |")
    lines += ["", "Targets (issue 4):", "", *render_targets(report["targets"]), ""]
    for name, infos in report["extras"].items():
        for info in infos:
            lines.append(f"- {name} round {info.pop('round', '?')}: {json.dumps(info)}")
    for name, why in report["skipped"].items():
        lines.append(f"- SKIPPED {name}: {why}")
    return "\n".join(lines) + "\n"


def render_targets(targets: list[dict[str, Any]]) -> list[str]:
    """One row per target, a ratio and a verdict column per InferX config."""
    configs = list(dict.fromkeys(t["config"] for t in targets))
    by_target: dict[str, dict[str, Any]] = {}
    for t in targets:
        by_target.setdefault(t["target"], {"want": t["want"]})[t["config"]] = t
    lines = [
        "| target | want | " + " | ".join(f"{c} ratio | {c} met" for c in configs) + " |",
        "|---|---|" + "---:|---|" * len(configs),
    ]
    for name, cells in by_target.items():
        row = " | ".join(
            f"{_cell(cells[c]['ratio'])} | {_met(cells[c]['met'])}" if c in cells else "- | -"
            for c in configs
        )
        lines.append(f"| {name} | {cells['want']} | {row} |")
    return lines


def _met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[met]


def _cell(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s points, 1 round, short warm-ups")
    p.add_argument("--rounds", type=int, help="rounds (default 2; 1 with --quick)")
    p.add_argument("--seconds", type=float, help="seconds per point (default 10; 3 with --quick)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per endpoint and model")
    p.add_argument("--conns", default="1,16,64", help="concurrency levels (default 1,16,64)")
    p.add_argument("--models", default="lr,rf", help="models (default lr,rf)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"servers (default {','.join(PEERS)})")
    p.add_argument(
        "--ref-rounds",
        type=int,
        default=1,
        help="rounds for the reference configs naive-def and ceiling-asgi (default 1)",
    )
    p.add_argument(
        "--batching-at-c1",
        action="store_true",
        help="also measure MLServer's batching configs at c=1 (they wait max_batch_time "
        "for company, so a lone client is slower; skipped by default to bound the run)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each point, wait up to this many seconds for other work on the box to "
        "fall below 0.25 cores (default 0: do not wait)",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run every server and wrk at this niceness (e.g. -5, needs root) so that other "
        "work sharing the box disturbs the measurement less; the same for all peers",
    )
    p.add_argument("--pin", help="CPU list for wrk (taskset -c), e.g. 1; default: unpinned")
    p.add_argument("--out", type=Path, default=BENCH / "results", help="results directory")
    p.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan(
        rounds=args.rounds or (1 if args.quick else 2),
        seconds=args.seconds or (3.0 if args.quick else 10.0),
        warmup_s=args.warmup or (1.0 if args.quick else 2.0),
        conns=tuple(int(c) for c in args.conns.split(",")),
        models=tuple(m for m in args.models.split(",") if m),
        peers=tuple(p for p in args.peers.split(",") if p),
        batching_at_c1=args.batching_at_c1,
        ref_rounds=args.ref_rounds,
        quiet_wait_s=args.quiet_wait,
    )
    for m in plan.models:
        if m not in MODELS:
            sys.exit(f"unknown model {m!r}: choose from {', '.join(MODELS)}")
    for s in plan.peers:
        if s not in PEERS:
            sys.exit(f"unknown server {s!r}: choose from {', '.join(PEERS)}")
    if args.nice:
        NICE[:] = ["nice", "-n", str(args.nice)]
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    started = time.monotonic()
    source_at_start = source_state()
    work = Path(tempfile.mkdtemp(prefix="inferx-bench-"))
    log(f"work directory {work}; plan {plan}")
    try:
        result = run(plan, work, args.pin)
    except KeyboardInterrupt:
        log("interrupted: stopping every process started")
        return 130
    finally:
        kill_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    rows = summarise(result["points"])
    plan_text = (
        f"{plan.rounds} round(s) (reference configs naive-def and ceiling-asgi: "
        f"{min(plan.ref_rounds, plan.rounds)}), {plan.seconds:g} s per point after a "
        f"{plan.warmup_s:g} s warm-up per endpoint at c=16, conns {plan.conns}, "
        f"medians; MLServer batching configs at c=1: "
        f"{'measured' if plan.batching_at_c1 else 'not measured'}."
    )
    report = {
        "machine": machine(),
        "generator": f"wrk 1 thread, {'pinned to CPU ' + args.pin if args.pin else 'unpinned'},"
        f" on the same box, {ROWS:,} distinct rows per model, raw percentiles"
        + (f"; servers and wrk at niceness {args.nice}" if args.nice else ""),
        "plan": asdict(plan),
        "plan_text": plan_text,
        "source": {"at_start": source_at_start, "at_end": source_state()},
        "versions": {m: _version(m) for m in ("sklearn", "numpy", "fastapi", "uvicorn")},
        "rows": [asdict(r) for r in rows],
        "ratios": ratios(rows),
        "targets": targets(rows),
        "points": [asdict(p) for p in result["points"]],
        "skipped": result["skipped"],
        "extras": result["extras"],
        "inferx_setup": result["inferx_setup"],
        "elapsed_s": round(time.monotonic() - started),
    }
    markdown = render(json.loads(json.dumps(report)))
    print("\n" + markdown, flush=True)  # noqa: T201
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    (args.out / f"{stamp}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"{stamp}.md").write_text(markdown)
    log(f"wrote {args.out / stamp}.json and .md in {report['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
