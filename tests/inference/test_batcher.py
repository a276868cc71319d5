from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import inferx_testmodels as tm
import numpy as np
import pytest

from inferx.inference.batcher import BatchConfig, Batcher
from inferx.inference.pool import (
    InferencePool,
    ModelBusy,
    ModelFailed,
    PredictResult,
    PredictTimeout,
    WorkerCrashed,
)

PoolFactory = Callable[..., Awaitable[InferencePool]]


@dataclass
class Call:
    key: str
    X: np.ndarray
    want_proba: bool
    timeout_s: float
    future: asyncio.Future[PredictResult]


class FakePool:
    """Records every submit; the test decides when and how each call is answered."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def submit(
        self, key: str, path: str, framework: str, X: np.ndarray, want_proba: bool, timeout_s: float
    ) -> asyncio.Future[PredictResult]:
        future = asyncio.get_running_loop().create_future()
        self.calls.append(Call(key, X, want_proba, timeout_s, future))
        return future

    def answer(self, index: int) -> None:
        call = self.calls[index]
        proba = np.column_stack([call.X[:, 0], -call.X[:, 0]]) if call.want_proba else None
        result = PredictResult(
            prediction=call.X.sum(axis=1),
            probabilities=proba,
            classes=["a", "b"] if call.want_proba else None,
            worker_id=0,
            compute_ms=1.0,
            batch_size=len(call.X),
        )
        call.future.set_result(result)

    def fail(self, index: int, error: Exception) -> None:
        self.calls[index].future.set_exception(error)


def rows(i: int, n: int = 1) -> np.ndarray:
    return np.full((n, 3), float(i))


def start(batcher: Batcher, key: str, X: np.ndarray, **kwargs: object) -> asyncio.Task:
    args = {"want_proba": False, "timeout_s": 10.0} | kwargs
    return asyncio.create_task(batcher.predict(key, "/m.pkl", "test", X, **args))  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_lone_request_is_sent_at_once_without_copy_or_timer() -> None:
    pool = FakePool()
    batcher = Batcher(pool)
    X = rows(1)
    task = start(batcher, "k", X)
    await asyncio.sleep(0)  # one step of the task: no timer could have fired
    assert len(pool.calls) == 1 and pool.calls[0].X is X
    pool.answer(0)
    result = await task
    assert result.prediction.tolist() == [3.0]
    stats = batcher.stats()
    assert (stats.calls, stats.immediate, stats.merged_calls) == (1, 1, 0)
    assert batcher._keys == {}  # idle keys leave no state behind


async def test_requests_arriving_while_busy_leave_together() -> None:
    pool = FakePool()
    batcher = Batcher(pool, BatchConfig(max_batch_rows=64))
    tasks = [start(batcher, "k", rows(i)) for i in range(64)]
    await settle()
    assert len(pool.calls) == 1  # the others wait for the call in flight
    pool.answer(0)
    await settle()
    assert len(pool.calls) == 2 and pool.calls[1].X.shape == (63, 3)
    pool.answer(1)
    results = await asyncio.gather(*tasks)
    for i, result in enumerate(results):
        assert result.prediction.tolist() == [3.0 * i]  # each gets its own row back
    assert [r.batch_size for r in results[:2]] == [1, 63]
    stats = batcher.stats()
    assert (stats.calls, stats.merged_calls, stats.merged_requests) == (2, 1, 63)


async def test_batches_respect_max_rows_and_split_multi_row_requests() -> None:
    pool = FakePool()
    batcher = Batcher(pool, BatchConfig(max_batch_rows=10))
    first = start(batcher, "k", rows(0))
    tasks = [start(batcher, "k", rows(i, n=i)) for i in range(1, 6)]  # 1+2+3+4+5 rows
    await settle()
    pool.answer(0)
    await settle()
    assert [len(c.X) for c in pool.calls] == [1, 10]  # 1+2+3+4 fit, 5 waits
    pool.answer(1)
    await settle()
    assert [len(c.X) for c in pool.calls] == [1, 10, 5]
    pool.answer(2)
    await first
    for i, task in enumerate(tasks, start=1):
        assert (await task).prediction.tolist() == [3.0 * i] * i


async def test_probabilities_go_only_to_requests_that_asked() -> None:
    pool = FakePool()
    batcher = Batcher(pool)
    first = start(batcher, "k", rows(0))
    plain, proba = start(batcher, "k", rows(1)), start(batcher, "k", rows(2), want_proba=True)
    await settle()
    pool.answer(0)
    await settle()
    assert pool.calls[1].want_proba
    pool.answer(1)
    await first
    assert (await plain).probabilities is None and (await plain).classes is None
    got = await proba
    assert got.probabilities is not None and got.probabilities.tolist() == [[2.0, -2.0]]
    assert got.classes == ["a", "b"]


async def test_a_failing_merged_call_is_retried_row_by_row() -> None:
    pool = FakePool()
    batcher = Batcher(pool)
    first = start(batcher, "k", rows(0))
    good, bad, good2 = (start(batcher, "k", rows(i)) for i in (1, -1, 2))
    await settle()
    pool.answer(0)
    await settle()
    pool.fail(1, ModelFailed("negative input"))
    await settle()
    assert [len(c.X) for c in pool.calls] == [1, 3, 1]  # retries go one at a time
    pool.answer(2)
    await settle()
    pool.fail(3, ModelFailed("negative input"))
    await settle()
    pool.answer(4)
    await first
    assert (await good).prediction.tolist() == [3.0]
    with pytest.raises(ModelFailed):
        await bad
    assert (await good2).prediction.tolist() == [6.0]
    assert batcher.stats().solo_retries == 3


async def test_a_crash_fails_every_request_of_the_call() -> None:
    pool = FakePool()
    batcher = Batcher(pool)
    first = start(batcher, "k", rows(0))
    others = [start(batcher, "k", rows(i)) for i in range(1, 4)]
    await settle()
    pool.answer(0)
    await settle()
    pool.fail(1, WorkerCrashed("worker died"))
    await first
    for task in others:
        with pytest.raises(WorkerCrashed, match="worker died"):
            await task
    assert len(pool.calls) == 2


async def test_queue_is_bounded_per_key() -> None:
    pool = FakePool()
    batcher = Batcher(pool, BatchConfig(max_queued_per_key=2))
    tasks = [start(batcher, "k", rows(i)) for i in range(3)]
    await settle()
    with pytest.raises(ModelBusy) as caught:
        await batcher.predict("k", "/m.pkl", "test", rows(9), False, 10.0)
    assert caught.value.status == 503 and caught.value.headers["Retry-After"] == "1"
    assert batcher.stats().busy_rejections == 1
    other_key = start(batcher, "other", rows(5))  # a different model is not affected
    await settle()
    assert pool.calls[-1].key == "other"
    pool.answer(0)
    await settle()
    assert len(pool.calls[2].X) == 2  # the two queued requests, merged
    pool.answer(1)
    pool.answer(2)
    await asyncio.gather(*tasks, other_key)


async def test_a_request_that_expired_in_the_queue_is_not_sent() -> None:
    pool = FakePool()
    batcher = Batcher(pool)
    first = start(batcher, "k", rows(0))
    stale = start(batcher, "k", rows(1), timeout_s=0.01)
    fresh = start(batcher, "k", rows(2))
    await asyncio.sleep(0.03)
    pool.answer(0)
    await settle()
    assert [len(c.X) for c in pool.calls] == [1, 1]
    assert pool.calls[1].X[0, 0] == 2.0
    with pytest.raises(PredictTimeout):
        await stale
    pool.answer(1)
    await asyncio.gather(first, fresh)


async def test_merged_call_timeout_covers_its_most_patient_request() -> None:
    pool = FakePool()
    batcher = Batcher(pool)
    first = start(batcher, "k", rows(0))
    a, b = start(batcher, "k", rows(1), timeout_s=2.0), start(batcher, "k", rows(2), timeout_s=5.0)
    await settle()
    pool.answer(0)
    await settle()
    assert 4.0 < pool.calls[1].timeout_s <= 5.0
    pool.answer(1)
    await asyncio.gather(first, a, b)


async def test_cancelled_waiters_are_skipped() -> None:
    pool = FakePool()
    batcher = Batcher(pool)
    first = start(batcher, "k", rows(0))
    gone, kept = start(batcher, "k", rows(1)), start(batcher, "k", rows(2))
    await settle()
    gone.cancel()
    await settle()
    pool.answer(0)
    await settle()
    assert pool.calls[1].X.tolist() == rows(2).tolist()
    pool.answer(1)
    await asyncio.gather(first, kept)


async def test_incompatible_inputs_are_not_merged() -> None:
    pool = FakePool()
    batcher = Batcher(pool)
    first = start(batcher, "k", rows(0))
    wide = start(batcher, "k", np.ones((1, 5)))
    narrow = start(batcher, "k", rows(1))
    await settle()
    pool.answer(0)
    await settle()
    pool.answer(1)
    await settle()
    pool.answer(2)
    await asyncio.gather(first, wide, narrow)
    assert [c.X.shape for c in pool.calls] == [(1, 3), (1, 5), (1, 3)]


async def test_keys_are_independent() -> None:
    pool = FakePool()
    batcher = Batcher(pool)
    a = start(batcher, "a", rows(0))
    b = start(batcher, "b", rows(1))
    await settle()
    assert [c.key for c in pool.calls] == ["a", "b"]
    pool.answer(0)
    pool.answer(1)
    await asyncio.gather(a, b)
    assert batcher.stats().immediate == 2


async def test_submit_errors_reach_the_caller() -> None:
    class Closed(FakePool):
        def submit(self, *args: object, **kwargs: object) -> asyncio.Future[PredictResult]:
            raise WorkerCrashed("no inference worker is running")

    batcher = Batcher(Closed())
    with pytest.raises(WorkerCrashed):
        await batcher.predict("k", "/m.pkl", "test", rows(0), False, 1.0)
    assert batcher._keys == {}


# --- through real worker processes --------------------------------------------------------


async def test_64_concurrent_requests_share_few_calls(
    make_pool: PoolFactory, tmp_path: Path
) -> None:
    pool = await make_pool(workers=1)
    batcher = Batcher(pool, BatchConfig(max_batch_rows=64))
    path = tm.write(tmp_path, "sum", tm.SumModel())
    inputs = [np.array([[float(i), 1.0]]) for i in range(64)]
    results = await asyncio.gather(
        *(batcher.predict("v", path, "test", X, True, 10.0) for X in inputs)
    )
    for X, result in zip(inputs, results, strict=True):
        assert result.prediction.tolist() == [X.sum()]
        assert result.probabilities is not None and result.probabilities.shape == (1, 2)
    stats = batcher.stats()
    assert stats.requests == 64 and stats.calls < 64 and stats.max_batch_requests > 1


async def test_one_bad_request_in_a_real_batch_fails_alone(
    make_pool: PoolFactory, tmp_path: Path
) -> None:
    pool = await make_pool(workers=1)
    batcher = Batcher(pool)
    path = tm.write(tmp_path, "poison", tm.PoisonRowModel())
    values = [1.0, 2.0, -1.0, 3.0, 4.0]
    results = await asyncio.gather(
        *(batcher.predict("v", path, "test", np.array([[v]]), False, 10.0) for v in values),
        return_exceptions=True,
    )
    assert isinstance(results[2], ModelFailed)
    assert [r.prediction.tolist() for i, r in enumerate(results) if i != 2] == [  # type: ignore[union-attr]
        [2.0],
        [4.0],
        [6.0],
        [8.0],
    ]
    assert pool.stats()[0].restarts == 0
