"""Micro-benchmark of the inference core: Batcher -> InferencePool -> worker processes.

No HTTP: it measures what the API process pays per prediction (plus the workers' compute).
Run: .venv/bin/python bench/pool_micro.py [--seconds 3] [--uvloop] [--no-batch]

Prints, per model and concurrency, requests/s, p50/p99 latency, the API process's CPU
microseconds per request, and the mean rows per model call.
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
    X_rf, y_rf = make_classification(2000, 20, random_state=0)
    rf = RandomForestClassifier(n_estimators=100, random_state=0).fit(X_rf, y_rf)
    X_lr, y_lr = load_iris(return_X_y=True)
    lr = LogisticRegression(max_iter=500).fit(X_lr, y_lr)
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


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp))
        config = PoolConfig(
            workers=args.workers, preload=("sklearn.ensemble", "sklearn.linear_model")
        )
        async with InferencePool(config) as pool:
            batcher = None if args.no_batch else Batcher(pool)
            predict = pool.predict if batcher is None else batcher.predict
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
    args = parser.parse_args()
    PROBA = args.proba
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(args))
