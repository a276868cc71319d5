"""Micro-benchmark of the inference core: Batcher -> InferencePool -> worker processes.

No HTTP: it measures what the API process pays per prediction (plus the workers' compute).
Run: .venv/bin/python bench/pool_micro.py [--seconds 3] [--uvloop] [--no-batch] [--proba]
     .venv/bin/python bench/pool_micro.py --sequential [--calls 5000] [--uvloop]

Prints, per model and concurrency, requests/s, p50/p99 latency, the API process's CPU
microseconds per request, and the mean rows per model call.

``--sequential`` measures one round trip at a time instead (single-row requests with
probabilities, one in flight): p50/p99 latency in µs and the CPU µs each call costs the API
process and the worker processes (from /proc/<pid>/schedstat), best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from inferx.inference.batcher import Batcher
from inferx.inference.pool import InferencePool, PoolConfig


def build_models(directory: Path) -> dict[str, tuple[str, np.ndarray]]:
    # The models of predict_load.py, the HTTP benchmark.
    X_rf, y_rf = make_classification(2000, 20, n_informative=10, random_state=0)
    rf = RandomForestClassifier(n_estimators=100, random_state=0).fit(X_rf, y_rf)
    X_lr, y_lr = load_iris(return_X_y=True)
    lr = LogisticRegression(max_iter=1000).fit(X_lr, y_lr)
    models = {}
    for name, model, X in (("lr", lr, X_lr), ("rf", rf, X_rf)):
        path = directory / f"{name}.pkl"
        path.write_bytes(pickle.dumps(model))
        models[name] = (str(path), X)
    return models


async def client(predict, key: str, path: str, X: np.ndarray, stop_at: float, lat: list) -> int:
    done = 0
    n = len(X)
    while time.perf_counter() < stop_at:
        row = X[done % n : done % n + 1]
        t0 = time.perf_counter()
        await predict(key, path, "sklearn", row, PROBA, 10.0)
        lat.append(time.perf_counter() - t0)
        done += 1
    return done


PROBA = False


def cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def run_point(predict, batcher, key, path, X, conc: int, seconds: float) -> dict:
    await asyncio.gather(*(predict(key, path, "sklearn", X[:1], False, 30.0) for _ in range(conc)))
    calls0 = batcher.stats().calls if batcher else 0
    lat: list[float] = []
    (user0, sys0), t0 = cpu(), time.perf_counter()
    stop_at = t0 + seconds
    counts = await asyncio.gather(
        *(client(predict, key, path, X, stop_at, lat) for _ in range(conc))
    )
    elapsed = time.perf_counter() - t0
    user1, sys1 = cpu()
    total = sum(counts)
    lat.sort()
    calls = (batcher.stats().calls - calls0) if batcher else total
    return {
        "req_s": total / elapsed,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
        "api_user_us": (user1 - user0) / total * 1e6,
        "api_sys_us": (sys1 - sys0) / total * 1e6,
        "rows_per_call": total / max(1, calls),
    }


def worker_cpu_ns(pool: InferencePool) -> int:
    """CPU time (ns) the live worker processes have used, from the scheduler's own count."""
    total = 0
    for stats in pool.stats():
        if stats.pid is not None:
            with open(f"/proc/{stats.pid}/schedstat") as f:
                total += int(f.read().split()[0])
    return total


async def sequential_point(predict, pool, key, path, X, calls: int) -> dict:
    n = len(X)
    for i in range(200):
        await predict(key, path, "sklearn", X[i % n : i % n + 1], True, 10.0)
    lat: list[float] = []
    api0, worker0 = time.process_time(), worker_cpu_ns(pool)
    for i in range(calls):
        row = X[i % n : i % n + 1]
        t0 = time.perf_counter()
        await predict(key, path, "sklearn", row, True, 10.0)
        lat.append(time.perf_counter() - t0)
    api1, worker1 = time.process_time(), worker_cpu_ns(pool)
    lat.sort()
    return {
        "p50_us": statistics.median(lat) * 1e6,
        "p99_us": lat[int(len(lat) * 0.99) - 1] * 1e6,
        "api_cpu_us": (api1 - api0) / calls * 1e6,
        "worker_cpu_us": (worker1 - worker0) / calls / 1e3,
    }


async def sequential(pool, predict, models, args: argparse.Namespace) -> None:
    header = f"{'model':5} {'p50 µs':>7} {'p99 µs':>7} {'API CPU µs/call':>15}"
    print(f"{header} {'worker CPU µs/call':>18}")
    for name, (path, X) in models.items():
        runs = [
            await sequential_point(predict, pool, name, path, X, args.calls)
            for _ in range(args.repeat)
        ]
        best = {field: min(r[field] for r in runs) for field in runs[0]}
        print(
            f"{name:5} {best['p50_us']:7.0f} {best['p99_us']:7.0f}"
            f" {best['api_cpu_us']:15.1f} {best['worker_cpu_us']:18.1f}"
        )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp))
        config = PoolConfig(
            workers=args.workers, preload=("sklearn.ensemble", "sklearn.linear_model")
        )
        async with InferencePool(config) as pool:
            batcher = None if args.no_batch else Batcher(pool)
            predict = pool.predict if batcher is None else batcher.predict
            if args.sequential:
                print(f"sequential batching={batcher is not None} uvloop={args.uvloop}")
                await sequential(pool, predict, models, args)
                return
            print(
                f"workers={len(pool.stats())} batching={batcher is not None} "
                f"uvloop={args.uvloop} proba={PROBA}"
            )
            print(
                f"{'model':5} {'conc':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
                f" {'API user µs/req':>15} {'API sys µs/req':>14} {'rows/call':>9}"
            )
            for name, (path, X) in models.items():
                for conc in args.concurrency:
                    r = await run_point(predict, batcher, name, path, X, conc, args.seconds)
                    print(
                        f"{name:5} {conc:4d} {r['req_s']:8.0f} {r['p50_ms']:7.2f}"
                        f" {r['p99_ms']:7.2f} {r['api_user_us']:15.1f} {r['api_sys_us']:14.1f}"
                        f" {r['rows_per_call']:9.1f}"
                    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--no-batch", action="store_true")
    parser.add_argument("--proba", action="store_true", help="ask for probabilities too")
    parser.add_argument("--sequential", action="store_true", help="one call in flight")
    parser.add_argument("--calls", type=int, default=5000, help="calls per --sequential run")
    parser.add_argument("--repeat", type=int, default=3, help="--sequential runs; best is shown")
    args = parser.parse_args()
    PROBA = args.proba
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(args))
