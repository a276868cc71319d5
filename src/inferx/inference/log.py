"""The prediction log: recorded in memory on the request path, written in bulk off it.

A slow or unreachable database slows the log, never predictions: the buffer is bounded, what
does not fit is dropped and counted (``inferx_prediction_log_dropped_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from inferx.db import unit_of_work
from inferx.inference import repository
from inferx.metrics import InferenceMetrics

log = structlog.get_logger("inferx.inference")

BATCH = 2000


class PredictionLog:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        metrics: InferenceMetrics,
        *,
        max_buffer: int,
        flush_s: float,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._max = max_buffer
        self._flush_s = flush_s
        self._buffer: deque[dict[str, Any]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.dropped = 0
        self._failing = False

    def record(self, entry: dict[str, Any]) -> None:
        if len(self._buffer) >= self._max:
            self.dropped += 1
            self._metrics.log_dropped.inc()
            return
        self._buffer.append(entry)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="prediction-log-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 10)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            try:
                await self.flush()
                if self._failing:
                    log.info("inference.prediction_log_recovered")
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    log.warning("inference.prediction_log_flush_failed", error=type(exc).__name__)
                self._failing = True

    async def flush(self) -> None:
        async with self._lock:
            while self._buffer:
                batch = [self._buffer.popleft() for _ in range(min(BATCH, len(self._buffer)))]
                try:
                    async with unit_of_work(self._sessions) as session:
                        await repository.write_log(session, batch)
                except BaseException:
                    # Keep what fits for the next attempt; the rest is dropped and counted.
                    room = self._max - len(self._buffer)
                    self._buffer.extendleft(reversed(batch[:room]))
                    lost = len(batch) - max(0, room)
                    if lost > 0:
                        self.dropped += lost
                        self._metrics.log_dropped.inc(lost)
                    raise

    @property
    def pending(self) -> int:
        return len(self._buffer)
