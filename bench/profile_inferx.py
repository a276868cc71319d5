"""Where InferX's API process spends its time per request, under the benchmark's load.

Starts ``inferx serve`` as predict_load.py does (same setup, models, rows and wrk script),
then for each model and concurrency samples the API process with py-spy while wrk drives it,
and prints, per request: CPU time of the API process, the event loop's busy share, and that
time split by layer (the innermost recognised frame of each sample decides its layer), plus
the hottest functions. The raw py-spy stacks stay in the work directory with --keep.

Needs py-spy (``.venv/bin/pip install py-spy``; not a project dependency).
Run: .venv/bin/python bench/profile_inferx.py [--seconds 10] [--points lr:64,rf:64,lr:1,rf:1]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import predict_load as pl

# Ordered: the first rule matching a frame (searched from the innermost frame outwards)
# names the layer of a sample.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prediction log", ("inferx/inference/log.py", "_record (inferx/inference/service.py")),
    ("quotas", ("inferx/quotas/", "limits/")),
    ("auth (cached)", ("inferx/auth/", "inferx/api_keys/", "inferx/kit/crypto.py")),
    ("result cache", ("inferx/inference/results.py",)),
    ("batcher / pool / IPC", ("inferx/inference/batcher.py", "pool.py", "ipc.py")),
    ("input parse + validation", ("inferx/inference/inputs.py", "parse_body (inferx")),
    ("engine (output conversion)", ("inferx/inference/engine.py",)),
    ("version resolution", ("inferx/inference/targets.py",)),
    ("structlog / logging", ("structlog/", "logging/", "inferx/logging.py")),
    ("prometheus metrics", ("prometheus_client/",)),
    ("sqlalchemy / aiosqlite", ("sqlalchemy/", "aiosqlite/", "inferx/db.py")),
    ("anyio (exit-stack cancel scopes, thread hops)", ("starlette/concurrency.py", "anyio/")),
    ("response model (pydantic)", ("pydantic/", "serialize_response", "fastapi/encoders.py")),
    ("FastAPI dependency solving", ("fastapi/dependencies/",)),
    ("inferx middleware", ("inferx/middleware.py",)),
    ("other inferx", ("inferx/",)),
    ("FastAPI / Starlette routing + middleware", ("fastapi/", "starlette/")),
    ("uvicorn / httptools", ("uvicorn/", "httptools")),
    ("asyncio / uvloop", ("asyncio/", "uvloop")),
)


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in LAYERS:
            if any(n in frame for n in needles):
                return name
    return "other"


def parse(path: Path) -> list[tuple[str, list[str], int]]:
    """py-spy raw output: ``thread (tid): name;frame;...;frame count`` per line."""
    samples = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(":", 1)[-1].strip()
        samples.append((thread, frames[1:], int(count)))
    return samples


def report(path: Path, rate: int, requests: int, seconds: float, cpu_s: float) -> str:
    samples = parse(path)
    total = sum(n for _, _, n in samples)
    main = [(f, n) for t, f, n in samples if t == "MainThread"]
    main_total = sum(n for _, n in main)
    per_req_us = 1e6 / rate / max(requests, 1)
    lines = [
        f"requests {requests} in {seconds:.1f} s ({requests / seconds:.0f}/s); API process CPU "
        f"{cpu_s / requests * 1e6:.0f} µs/req ({cpu_s / seconds:.2f} cores); py-spy active "
        f"samples {total} (event loop thread {main_total}: busy {main_total / rate / seconds:.0%}"
        f" of the time, {main_total * per_req_us:.0f} µs/req)",
        "",
        "| layer (event loop thread) | share | µs/req |",
        "|---|---:|---:|",
    ]
    layers: collections.Counter[str] = collections.Counter()
    for frames, n in main:
        layers[layer_of(frames)] += n
    for name, n in layers.most_common():
        lines.append(f"| {name} | {n / max(main_total, 1):.1%} | {n * per_req_us:.0f} |")
    threads: collections.Counter[str] = collections.Counter()
    for t, _, n in samples:
        if t != "MainThread":
            threads[t.split(" (")[0].rstrip("-0123456789")] += n
    if threads:
        lines += ["", "Other threads (active samples, µs/req):"]
        lines += [f"- {t}: {n * per_req_us:.0f}" for t, n in threads.most_common(6)]
    own: collections.Counter[str] = collections.Counter()
    for frames, n in main:
        if frames:
            own[frames[-1]] += n
    lines += ["", "Hottest functions on the event loop thread (self time):", ""]
    lines += [
        f"- {n / max(main_total, 1):.1%} {f} ({n * per_req_us:.0f} µs/req)"
        for f, n in own.most_common(15)
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--points", default="lr:64,rf:64,lr:1,rf:1", help="model:conns,...")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="INFERX_X=value",
        help="a setting for inferx serve (repeatable), to measure what a feature costs",
    )
    p.add_argument("--no-spy", action="store_true", help="only CPU per request, no py-spy")
    p.add_argument("--nice", type=int, default=0, help="niceness of inferx and wrk (e.g. -5)")
    p.add_argument("--redis", action="store_true", help="the inferx-redis configuration")
    args = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not args.no_spy and not Path(spy).exists():
        sys.exit("py-spy not found: .venv/bin/pip install py-spy")
    wrk = pl.ensure_wrk()
    if args.nice:
        pl.NICE[:] = ["nice", "-n", str(args.nice)]
    work = Path(tempfile.mkdtemp(prefix="inferx-profile-"))
    out: list[str] = []
    try:
        models = pl.build_models(work, pl.ROWS)
        extra = dict(kv.split("=", 1) for kv in args.env)
        server = (pl.InferXRedis if args.redis else pl.InferX)(work, models, extra)
        server.start()
        load = pl.Load(wrk, work, None)
        for point in args.points.split(","):
            model, conns = point.split(":")
            ep = server.endpoints(model)[0]
            load.run(server, ep, int(conns), 2.0)  # warm-up
            raw = work / f"pyspy-{model}-c{conns}.txt"
            cmd = [spy, "record", "--pid", str(server.proc.pid), "--rate", str(args.rate)]
            cmd += ["--duration", str(int(args.seconds)), "--format", "raw", "--threads"]
            cmd += ["--nonblocking", "-o", str(raw)]
            sampler = None
            if not args.no_spy:
                sampler = subprocess.Popen(
                    cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                pl._children.append(sampler)
                time.sleep(0.2)
            workers0 = _workers_cpu(server)
            api_cpu0 = pl.tree_cpu_s(server.proc.pid) - workers0
            result = load.run(server, ep, int(conns), args.seconds)
            workers = _workers_cpu(server) - workers0
            api_cpu = pl.tree_cpu_s(server.proc.pid) - workers0 - workers - api_cpu0
            seconds = result["duration_us"] / 1e6
            requests = result["requests"]
            title = f"## {server.name} API process, {model} c={conns} {' '.join(args.env)}"
            p50 = pl.percentile(pl.raw_histogram(result, int(conns)), 50)
            text = (
                f"{requests / seconds:.0f} req/s, p50 {p50 or 0:.3f} ms; API process "
                f"{api_cpu / requests * 1e6:.0f} µs/req ({api_cpu / seconds:.2f} cores); workers "
                f"{workers / requests * 1e6:.0f} µs/req; foreign load "
                f"{result['foreign_cores']:.2f} cores"
            )
            if sampler is not None:
                sampler.wait(timeout=60)
                pl._children.remove(sampler)
                text += "\n\n" + report(raw, args.rate, requests, seconds, api_cpu)
            out += [title, "", text, ""]
            print(f"\n{title}\n\n{text}\n", flush=True)  # noqa: T201
    finally:
        pl.kill_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")  # noqa: T201
    return 0


def _workers_cpu(server: pl.InferX) -> float:
    """CPU seconds of the inference workers (the process tree minus the API process)."""
    assert server.proc is not None
    table = pl._proc_table()
    return sum(table[pid][1] for pid in pl.descendants(server.proc.pid, table)[1:])


if __name__ == "__main__":
    sys.exit(main())
