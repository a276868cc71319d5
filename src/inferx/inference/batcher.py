"""Adaptive batching in front of the pool: batch while busy, never wait when idle.

Per version key at most ``max_in_flight_per_key`` model calls run at once. A request that
finds a free slot is sent at once, alone, with no timer; requests that arrive while the key's
calls are running queue up and leave together, merged into one vectorised call of up to
``max_batch_rows`` rows, as soon as a call returns. The batch size therefore follows the load:
1 for a lone client, large under concurrency, with no fixed wait added to any request.

When a merged call fails inside the model, its requests are retried one by one so a bad
request fails alone. The queue per key is bounded (``ModelBusy``): a hung or slow model
cannot hold an unbounded number of requests.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np

from inferx.inference.pool import (
    InferenceError,
    ModelBusy,
    ModelFailed,
    PredictResult,
    PredictTimeout,
    WorkerCrashed,
)


class Submitter(Protocol):
    def submit(
        self,
        version_key: str,
        path: str,
        framework: str,
        X: np.ndarray,
        want_proba: bool,
        timeout_s: float,
    ) -> asyncio.Future[PredictResult]: ...


@dataclass(frozen=True, slots=True)
class BatchConfig:
    max_batch_rows: int = 64
    max_in_flight_per_key: int = 1
    max_queued_per_key: int = 1024

    def __post_init__(self) -> None:
        if min(self.max_batch_rows, self.max_in_flight_per_key, self.max_queued_per_key) < 1:
            raise ValueError("batch limits must be at least 1")


@dataclass(slots=True)
class BatcherStats:
    requests: int = 0
    calls: int = 0  # model calls sent to the pool
    immediate: int = 0  # requests sent at once, alone, because their key was idle
    merged_calls: int = 0  # calls carrying more than one request
    merged_requests: int = 0
    max_batch_requests: int = 0
    solo_retries: int = 0  # requests re-sent alone after their merged call failed
    busy_rejections: int = 0


class _Waiter:
    __slots__ = ("X", "want_proba", "path", "framework", "future", "deadline", "solo")

    def __init__(
        self,
        X: np.ndarray,
        want_proba: bool,
        path: str,
        framework: str,
        future: asyncio.Future[PredictResult],
        deadline: float,
    ) -> None:
        self.X = X
        self.want_proba = want_proba
        self.path = path
        self.framework = framework
        self.future = future
        self.deadline = deadline
        self.solo = False

    def fits_with(self, other: _Waiter) -> bool:
        return (
            not (self.solo or other.solo)
            and self.X.shape[1:] == other.X.shape[1:]
            and self.X.dtype == other.X.dtype
            and self.path == other.path
            and self.framework == other.framework
        )


class _Key:
    __slots__ = ("in_flight", "queue")

    def __init__(self) -> None:
        self.in_flight = 0
        self.queue: deque[_Waiter] = deque()


class Batcher:
    """Merges concurrent requests for one version key into one pool call."""

    def __init__(
        self,
        pool: Submitter,
        config: BatchConfig | None = None,
        on_call: Callable[[int], None] | None = None,
    ) -> None:
        self._pool = pool
        self._on_call = on_call  # told the rows of every model call (metrics)
        self.config = config or BatchConfig()
        self._keys: dict[str, _Key] = {}
        self._stats = BatcherStats()

    async def predict(
        self,
        version_key: str,
        path: str,
        framework: str,
        X: np.ndarray,
        want_proba: bool,
        timeout_s: float,
    ) -> PredictResult:
        state = self._keys.get(version_key)
        if state is None:
            state = self._keys[version_key] = _Key()
        self._stats.requests += 1
        if state.in_flight < self.config.max_in_flight_per_key and not state.queue:
            future = self._submit_alone(
                version_key, state, path, framework, X, want_proba, timeout_s
            )
            return await future
        if len(state.queue) >= self.config.max_queued_per_key:
            self._stats.busy_rejections += 1
            raise ModelBusy(f"too many requests waiting for model version {version_key}")
        loop = asyncio.get_running_loop()
        waiter = _Waiter(
            X, want_proba, path, framework, loop.create_future(), loop.time() + timeout_s
        )
        state.queue.append(waiter)
        return await waiter.future

    def stats(self) -> BatcherStats:
        return dataclasses.replace(self._stats)

    def _submit_alone(
        self,
        key: str,
        state: _Key,
        path: str,
        framework: str,
        X: np.ndarray,
        want_proba: bool,
        timeout_s: float,
    ) -> asyncio.Future[PredictResult]:
        try:
            future = self._pool.submit(key, path, framework, X, want_proba, timeout_s)
        except BaseException:
            self._forget_if_idle(key, state)
            raise
        state.in_flight += 1
        self._stats.immediate += 1
        self._count_call(1, X.shape[0])
        future.add_done_callback(partial(self._alone_done, key, state))
        return future

    def _alone_done(self, key: str, state: _Key, _: asyncio.Future[PredictResult]) -> None:
        state.in_flight -= 1
        self._pump(key, state)

    def _pump(self, key: str, state: _Key) -> None:
        while state.in_flight < self.config.max_in_flight_per_key and state.queue:
            batch = self._take(state)
            if batch:
                self._send(key, state, batch)
        self._forget_if_idle(key, state)

    def _forget_if_idle(self, key: str, state: _Key) -> None:
        if state.in_flight == 0 and not state.queue and self._keys.get(key) is state:
            del self._keys[key]

    def _take(self, state: _Key) -> list[_Waiter]:
        """The next batch from the head of the queue; expired and abandoned waiters are dropped."""
        now = asyncio.get_running_loop().time()
        batch: list[_Waiter] = []
        rows = 0
        queue = state.queue
        while queue:
            waiter = queue[0]
            if waiter.future.done():
                queue.popleft()
                continue
            if waiter.deadline <= now:
                queue.popleft()
                waiter.future.set_exception(PredictTimeout("the request timed out while queued"))
                continue
            if batch and (
                rows + len(waiter.X) > self.config.max_batch_rows or not batch[0].fits_with(waiter)
            ):
                break
            queue.popleft()
            batch.append(waiter)
            rows += len(waiter.X)
        return batch

    def _send(self, key: str, state: _Key, batch: list[_Waiter]) -> None:
        first = batch[0]
        X = first.X if len(batch) == 1 else np.concatenate([w.X for w in batch])
        want_proba = any(w.want_proba for w in batch)
        # A merged call may take as long as its most patient request allows.
        timeout_s = max(w.deadline for w in batch) - asyncio.get_running_loop().time()
        try:
            future = self._pool.submit(key, first.path, first.framework, X, want_proba, timeout_s)
        except (InferenceError, ValueError) as exc:
            for waiter in batch:
                _fail(waiter, exc)
            return
        state.in_flight += 1
        self._count_call(len(batch), X.shape[0])
        future.add_done_callback(partial(self._batch_done, key, state, batch))

    def _count_call(self, requests: int, rows: int) -> None:
        """One model call sent: the stats, and ``on_call`` told its rows."""
        if self._on_call is not None:
            self._on_call(rows)
        stats = self._stats
        stats.calls += 1
        stats.max_batch_requests = max(stats.max_batch_requests, requests)
        if requests > 1:
            stats.merged_calls += 1
            stats.merged_requests += requests

    def _batch_done(
        self, key: str, state: _Key, batch: list[_Waiter], future: asyncio.Future[PredictResult]
    ) -> None:
        state.in_flight -= 1
        error: BaseException | None = (
            WorkerCrashed("the model call was cancelled") if future.cancelled() else None
        )
        error = error or future.exception()
        if error is None:
            _deliver(batch, future.result())
        elif isinstance(error, ModelFailed) and len(batch) > 1:
            self._stats.solo_retries += len(batch)
            for waiter in reversed(batch):
                waiter.solo = True
                state.queue.appendleft(waiter)
        else:
            for waiter in batch:
                _fail(waiter, error)
        self._pump(key, state)


def _deliver(batch: list[_Waiter], result: PredictResult) -> None:
    offset = 0
    for waiter in batch:
        end = offset + len(waiter.X)
        if not waiter.future.done():
            proba = result.probabilities if waiter.want_proba else None
            waiter.future.set_result(
                PredictResult(
                    prediction=result.prediction[offset:end],
                    probabilities=None if proba is None else proba[offset:end],
                    classes=result.classes if waiter.want_proba else None,
                    worker_id=result.worker_id,
                    compute_ms=result.compute_ms,
                    batch_size=result.batch_size,
                )
            )
        offset = end


def _fail(waiter: _Waiter, error: BaseException) -> None:
    if waiter.future.done():
        return
    # One instance per waiter, so tracebacks stay separate; copy keeps detail and headers.
    waiter.future.set_exception(copy.copy(error))
