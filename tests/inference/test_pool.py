from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import inferx_testmodels as tm
import numpy as np
import pytest

from inferx.inference.pool import (
    InferencePool,
    ModelFailed,
    ModelLoadFailed,
    ModelQuarantined,
    PoolClosed,
    PredictTimeout,
    WorkerCrashed,
)
from inferx.kit.sandbox import SandboxLimits

X = np.arange(12, dtype=np.float64).reshape(3, 4)
PoolFactory = Callable[..., Awaitable[InferencePool]]


def keys_on_each_worker(pool: InferencePool, prefix: str) -> dict[int, str]:
    """One version key per worker id (routing is deterministic)."""
    found: dict[int, str] = {}
    for i in range(1000):
        found.setdefault(pool.worker_for(f"{prefix}-{i}"), f"{prefix}-{i}")
        if len(found) == len(pool.stats()):
            return found
    raise AssertionError("routing never reached every worker")


async def predict(pool: InferencePool, key: str, path: str, **kwargs: object):
    args = {"X": X, "want_proba": False, "timeout_s": 10.0} | kwargs
    return await pool.predict(key, path, "test", **args)  # type: ignore[arg-type]


async def test_predict_round_trip_with_probabilities(pool: InferencePool, tmp_path: Path) -> None:
    path = tm.write(tmp_path, "sum", tm.SumModel())
    result = await predict(pool, "v-sum", path, want_proba=True)
    np.testing.assert_array_equal(result.prediction, X.sum(axis=1))
    assert result.probabilities is not None and result.probabilities.shape == (3, 2)
    assert result.classes == [0, 1]
    assert result.worker_id == pool.worker_for("v-sum")
    assert result.compute_ms >= 0 and result.batch_size == 3
    without = await predict(pool, "v-sum", path)
    assert without.probabilities is None and without.classes is None


async def test_string_predictions(pool: InferencePool, tmp_path: Path) -> None:
    path = tm.write(tmp_path, "label", tm.LabelModel())
    result = await predict(pool, "v-label", path, X=np.array([[1.0], [-1.0]]))
    assert result.prediction.tolist() == ["pos", "neg"]


async def test_object_inputs_travel_as_json(pool: InferencePool, tmp_path: Path) -> None:
    path = tm.write(tmp_path, "echo", tm.EchoModel())
    X_mixed = np.array([["red", 1.5], ["blue", None]], dtype=object)
    result = await predict(pool, "v-echo", path, X=X_mixed)
    assert result.prediction.tolist() == ["red", "blue"]


async def test_routing_is_sticky_and_models_load_once(pool: InferencePool, tmp_path: Path) -> None:
    path = tm.write(tmp_path, "sum", tm.SumModel())
    results = await asyncio.gather(*(predict(pool, "v-sticky", path) for _ in range(20)))
    assert {r.worker_id for r in results} == {pool.worker_for("v-sticky")}
    assert sum(s.models for s in pool.stats()) == 1
    caches = await pool.cache_stats()
    assert sum(c["loads"] for c in caches if c) == 1


async def test_versions_spread_over_workers(pool: InferencePool) -> None:
    owners = {pool.worker_for(f"version-{i}") for i in range(50)}
    assert owners == {0, 1}


async def test_model_exception_is_model_failed_and_worker_survives(
    pool: InferencePool, tmp_path: Path
) -> None:
    path = tm.write(tmp_path, "raise", tm.RaiseModel())
    worker = pool.worker_for("v-raise")
    pid = pool.stats()[worker].pid
    with pytest.raises(ModelFailed, match="boom from the model") as caught:
        await predict(pool, "v-raise", path)
    assert caught.value.status == 500
    stats = pool.stats()[worker]
    assert stats.pid == pid and stats.restarts == 0 and stats.alive


async def test_load_failure_is_model_load_failed(pool: InferencePool, tmp_path: Path) -> None:
    path = tm.write(tmp_path, "bomb", tm.LoadBomb("unsupported global os.system"))
    with pytest.raises(ModelLoadFailed, match="unsupported global os.system"):
        await predict(pool, "v-bomb", path)
    with pytest.raises(ModelLoadFailed, match="FileNotFoundError"):
        await predict(pool, "v-missing", str(tmp_path / "missing.pkl"))
    assert all(s.restarts == 0 for s in pool.stats())


async def test_hung_model_times_out_and_its_worker_is_replaced(
    pool: InferencePool, tmp_path: Path
) -> None:
    hung, other = keys_on_each_worker(pool, "hung"), keys_on_each_worker(pool, "other")
    hang = tm.write(tmp_path, "hang", tm.SleepModel(60))
    good = tm.write(tmp_path, "sum", tm.SumModel())
    old_pid = pool.stats()[0].pid
    with pytest.raises(PredictTimeout) as caught:
        await predict(pool, hung[0], hang, timeout_s=1.0)
    assert caught.value.status == 504
    assert pool.stats()[0].restarts == 1 and pool.stats()[0].pid != old_pid
    # The replacement serves the next request for another model on the same worker.
    result = await predict(pool, other[0], good)
    assert result.worker_id == 0
    assert not _alive(old_pid)
    assert pool.stats()[1].restarts == 0


async def test_in_flight_requests_of_a_killed_worker_fail_as_crashed(
    pool: InferencePool, tmp_path: Path
) -> None:
    keys = keys_on_each_worker(pool, "w")
    hang = tm.write(tmp_path, "hang", tm.SleepModel(60))
    first = asyncio.create_task(predict(pool, keys[0], hang, timeout_s=1.0))
    second = asyncio.create_task(predict(pool, keys[0], hang, timeout_s=30.0))
    with pytest.raises(PredictTimeout):
        await first
    with pytest.raises(WorkerCrashed) as caught:
        await second
    assert caught.value.status == 503


@pytest.mark.parametrize("model", [tm.ExitModel(), tm.SegfaultModel()], ids=["exit", "segfault"])
async def test_crashing_model_fails_alone_and_worker_restarts(
    pool: InferencePool, tmp_path: Path, model: object
) -> None:
    keys = keys_on_each_worker(pool, "c")
    crash, good = tm.write(tmp_path, "crash", model), tm.write(tmp_path, "sum", tm.SumModel())
    await predict(pool, keys[1], good)
    with pytest.raises(WorkerCrashed, match="died"):
        await predict(pool, keys[0], crash)
    result = await predict(pool, keys[1], good)  # the other worker never noticed
    assert result.worker_id == 1 and pool.stats()[1].restarts == 0
    assert pool.stats()[0].restarts == 1
    result = await predict(pool, keys[0], good)  # and worker 0 is back
    assert result.worker_id == 0


async def test_memory_hog_is_stopped_by_rlimit(make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = await make_pool(workers=1, limits=SandboxLimits(memory_bytes=1 << 30))
    hog = tm.write(tmp_path, "hog", tm.HogModel(3 << 30))
    with pytest.raises((ModelFailed, WorkerCrashed)) as caught:
        await predict(pool, "v-hog", hog)
    if isinstance(caught.value, ModelFailed):
        assert "MemoryError" in caught.value.detail
    result = await predict(pool, "v-sum", tm.write(tmp_path, "sum", tm.SumModel()))
    np.testing.assert_array_equal(result.prediction, X.sum(axis=1))


async def test_worker_environment_holds_no_secrets(
    make_pool: PoolFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERX_SECRET_KEY", "s3cr3t-signing-key-0123456789abcdef")
    monkeypatch.setenv("INFERX_DATABASE_URL", "postgresql://u:pw-s3cr3t@db/inferx")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-s3cr3t")
    pool = await make_pool(workers=1, limits=SandboxLimits(memory_bytes=1536 << 20))
    report = await _probe(pool, tmp_path)
    env_text = json.dumps(report["env"])
    assert "s3cr3t" not in env_text
    assert not [name for name in report["env"] if name.startswith(("INFERX_", "AWS_"))]
    assert report["rlimit_as"] == 1536 << 20 and report["rlimit_core"] == 0
    assert report["pid"] == pool.stats()[0].pid
    # stdio, the socket to the API, the listdir handle; nothing else of the API's.
    assert len(report["open_fds"]) <= 5


async def test_worker_has_no_network_where_permitted(pool: InferencePool, tmp_path: Path) -> None:
    if not all(s.network_isolated for s in pool.stats()):
        pytest.skip("network namespaces are not permitted here; workers keep the host network")
    report = await _probe(pool, tmp_path)
    assert report["interfaces"] == ["lo"]
    assert report["connect"] != "connected"


async def _probe(pool: InferencePool, tmp_path: Path) -> dict:
    path = tm.write(tmp_path, "probe", tm.ProbeModel())
    result = await predict(pool, "v-probe", path, X=np.zeros((1, 1)))
    return json.loads(result.prediction[0])


@pytest.mark.parametrize("mode", ["huge", "pickle", "forged"])
async def test_hostile_bytes_from_a_worker_kill_only_that_worker(
    pool: InferencePool, tmp_path: Path, mode: str
) -> None:
    keys = keys_on_each_worker(pool, "e")
    evil, good = (
        tm.write(tmp_path, "evil", tm.EvilModel(mode)),
        tm.write(tmp_path, "sum", tm.SumModel()),
    )
    with pytest.raises(WorkerCrashed, match="protocol violation"):
        await predict(pool, keys[0], evil)
    assert pool.stats()[0].restarts == 1
    for key in keys.values():
        np.testing.assert_array_equal((await predict(pool, key, good)).prediction, X.sum(axis=1))


async def test_evict_is_broadcast(pool: InferencePool, tmp_path: Path) -> None:
    path = tm.write(tmp_path, "sum", tm.SumModel())
    await predict(pool, "v-evict", path)
    assert sum(s.models for s in pool.stats()) == 1
    assert await pool.evict("v-evict") == 1
    assert await pool.evict("v-evict") == 0
    assert sum(s.models for s in pool.stats()) == 0


async def test_stats_report_each_worker(pool: InferencePool) -> None:
    stats = pool.stats()
    assert [s.worker_id for s in stats] == [0, 1]
    assert all(s.alive and s.pid and s.restarts == 0 and s.in_flight == 0 for s in stats)


async def test_stop_waits_for_in_flight_then_reaps(make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = await make_pool()
    pids = [s.pid for s in pool.stats()]
    slow = tm.write(tmp_path, "slow", tm.SleepModel(0.3))
    task = asyncio.create_task(predict(pool, "v-slow", slow))
    await asyncio.sleep(0.05)
    await pool.stop()
    assert (await task).prediction.tolist() == X[:, 0].tolist()
    assert not any(_alive(pid) for pid in pids if pid)
    with pytest.raises(PoolClosed):
        await predict(pool, "v-slow", slow)


async def test_stop_kills_what_does_not_finish(make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = await make_pool(workers=1)
    pid = pool.stats()[0].pid
    task = asyncio.create_task(predict(pool, "v-hang", tm.write(tmp_path, "h", tm.SleepModel(60))))
    await asyncio.sleep(0.05)
    await pool.stop(timeout_s=0.2)
    with pytest.raises(PoolClosed):
        await task
    assert pid and not _alive(pid)


async def test_start_fails_cleanly_when_workers_cannot_start(make_pool: PoolFactory) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        await make_pool(workers=1, loader="no_such_module:load", start_timeout_s=1.0)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_os_exposes_pidfd() -> None:
    assert hasattr(os, "pidfd_open")  # the pool reaps workers through pidfds on Linux


async def test_a_model_that_keeps_killing_its_worker_is_quarantined(
    make_pool: PoolFactory, tmp_path: Path
) -> None:
    pool = await make_pool(quarantine_after=2, quarantine_s=60.0)
    keys = keys_on_each_worker(pool, "q")
    crash = tm.write(tmp_path, "crash", tm.ExitModel())
    good = tm.write(tmp_path, "sum", tm.SumModel())
    for _ in range(2):
        with pytest.raises(WorkerCrashed):
            await predict(pool, keys[0], crash)
    with pytest.raises(ModelQuarantined) as caught:
        await predict(pool, keys[0], crash)
    assert caught.value.status == 503 and int(caught.value.headers["Retry-After"]) > 1
    assert pool.stats()[0].restarts == 2  # the third request never reached a worker
    other = keys_on_each_worker(pool, "other")[0]
    assert (await predict(pool, other, good)).worker_id == 0


async def test_a_success_resets_the_strike_count(make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = await make_pool(workers=1, quarantine_after=2)
    flaky = tm.write(tmp_path, "crash", tm.ExitModel())
    with pytest.raises(WorkerCrashed):
        await predict(pool, "v", flaky)
    tm.write(tmp_path, "crash", tm.SumModel())  # same key and path now loads a good model
    await predict(pool, "v", flaky)
    tm.write(tmp_path, "crash", tm.ExitModel())
    await pool.evict("v")
    with pytest.raises(WorkerCrashed):
        await predict(pool, "v", flaky)  # one strike again, not two
    tm.write(tmp_path, "crash", tm.SumModel())
    await predict(pool, "v", flaky)


async def test_a_lone_request_polls_for_its_answer(make_pool: PoolFactory, tmp_path: Path) -> None:
    """With poll_s, a lone request is answered before submit returns; a slow model falls back
    to the loop after poll_s and still times out; concurrent requests never poll."""
    solo = [True]
    pool = await make_pool(poll_s=0.5, solo=lambda: solo[0])
    fast = tm.write(tmp_path, "sum", tm.SumModel())
    await predict(pool, "v-poll", fast)  # loads the model
    future = pool.submit("v-poll", fast, "test", X, False, 10.0)
    assert future.done() and future.result().prediction.tolist() == X.sum(axis=1).tolist()
    hang = tm.write(tmp_path, "hang", tm.SleepModel(60))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PredictTimeout):
        await predict(pool, "v-hang", hang, timeout_s=1.0)
    assert 0.9 < loop.time() - started < 5
    solo[0] = False
    future = pool.submit("v-poll", fast, "test", X, False, 10.0)
    assert not future.done()
    assert (await future).prediction.tolist() == X.sum(axis=1).tolist()
