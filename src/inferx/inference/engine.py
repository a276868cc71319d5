"""The transport-free inference core: result cache -> batcher -> sandboxed worker pool."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from inferx.config import Settings
from inferx.events import EventBus
from inferx.inference.batcher import BatchConfig, Batcher
from inferx.inference.pool import InferencePool, ModelFailed, PoolConfig
from inferx.inference.results import Admissions, ResultCache, input_digest, input_fingerprint
from inferx.inference.targets import Target
from inferx.kit.sandbox import SandboxLimits
from inferx.metrics import InferenceMetrics
from inferx.registry.storage import ModelStorage

log = structlog.get_logger("inferx.inference")

# Frameworks whose predict is a pure function of the input: their results may be cached.
DETERMINISTIC = frozenset({"sklearn", "skops", "onnx", "xgboost", "lightgbm"})
MAX_OUTPUT_VALUES = 5_000_000
PRELOAD = ("numpy", "sklearn.ensemble", "sklearn.linear_model", "sklearn.pipeline")


@dataclass(slots=True)
class Outcome:
    prediction: list[Any]
    probabilities: list[list[float]] | None
    classes: list[Any] | None
    cache_hit: bool
    compute_ms: float


class ModelOutputInvalid(ModelFailed):
    title = "Model output invalid"


class Engine:
    def __init__(
        self,
        settings: Settings,
        storage: ModelStorage,
        results: ResultCache,
        metrics: InferenceMetrics,
        solo: Callable[[], bool] = lambda: False,
    ) -> None:
        """``solo()``: is one request all the server is doing (see ``PoolConfig.poll_s``)?"""
        self.settings = settings
        self.storage = storage
        self.results = results
        self.metrics = metrics
        self._cache_hits = metrics.result_cache.labels("hit")
        self._cache_misses = metrics.result_cache.labels("miss")
        self._cache_bypassed = metrics.result_cache.labels("bypass")
        self.admissions = Admissions()
        self.pool = InferencePool(
            PoolConfig(
                workers=settings.inference_workers,
                cache_max_bytes=settings.model_cache_mb << 20,
                cache_max_items=settings.model_cache_items,
                limits=SandboxLimits(
                    memory_bytes=settings.worker_memory_mb << 20, file_size_bytes=1 << 20
                ),
                # Importing scikit-learn takes seconds: pay it at start, not on the first request.
                preload=PRELOAD,
                poll_s=settings.inference_poll_us / 1e6,
                solo=solo,
            )
        )
        self.batcher = Batcher(
            self.pool,
            BatchConfig(
                max_batch_rows=settings.batch_max_rows,
                max_in_flight_per_key=settings.batch_max_in_flight,
            ),
            on_call=metrics.batch_rows.observe,
        )
        self._started: asyncio.Task[None] | None = None
        self._paths: dict[str, str] = {}
        self._keys_by_model: dict[str, set[str]] = {}

    def start_in_background(self) -> None:
        """Workers start while the API already answers; the first prediction waits for them."""
        if self._started is None:
            self._started = asyncio.create_task(self.pool.start(), name="inference-pool-start")

    async def ready(self) -> None:
        started = self._started
        if started is not None and started.done() and not started.cancelled():
            started.result()  # raises if the pool failed to start
            return
        self.start_in_background()
        assert self._started is not None
        await asyncio.shield(self._started)

    async def stop(self) -> None:
        if self._started is not None:
            with contextlib.suppress(Exception):
                await self._started
            await self.pool.stop()

    async def run(self, target: Target, X: np.ndarray) -> Outcome:
        want_proba = target.has_proba
        cacheable = self.settings.result_cache_ttl_s > 0 and target.framework in DETERMINISTIC
        digest = ""
        if cacheable:
            admission = self.admissions.of(target.key)
            if admission.caching:
                digest = input_digest(X, want_proba)
                hit = await self.results.get(target.key, digest)
                admission.looked_up(hit is not None)
                (self._cache_hits if hit else self._cache_misses).inc()
                if hit is not None:
                    return Outcome(
                        hit["prediction"], hit["probabilities"], hit["classes"], True, 0.0
                    )
            else:
                admission.bypassed(input_fingerprint(X))
                self._cache_bypassed.inc()
        await self.ready()
        path = await self._path(target)
        start = time.perf_counter()
        result = await self.batcher.predict(
            target.key, path, target.framework, X, want_proba, self.settings.predict_timeout_s
        )
        elapsed = time.perf_counter() - start
        self.metrics.inference_latency.observe(result.compute_ms / 1000)
        outcome = Outcome(
            prediction=_json_safe(result.prediction, X.shape[0]),
            probabilities=None
            if result.probabilities is None
            else _json_safe(result.probabilities, X.shape[0]),
            classes=_plain(result.classes) if result.classes is not None else target.classes,
            cache_hit=False,
            compute_ms=elapsed * 1000,
        )
        if digest:
            await self.results.put(target.key, digest, _cached(outcome))
        return outcome

    def subscribe(self, events: EventBus) -> None:
        """A status change or a delete evicts the version everywhere: caches and workers."""

        async def on_status(_event: str, payload: dict[str, Any]) -> None:
            await self.evict(payload["model_version_id"])

        async def on_delete(_event: str, payload: dict[str, Any]) -> None:
            for key in self._keys_by_model.pop(payload["model_id"], set()):
                await self.evict(key)

        events.subscribe("model.version.status_changed", on_status)
        events.subscribe("model.deleted", on_delete)

    async def evict(self, target_key: str) -> None:
        self._paths.pop(target_key, None)
        self.admissions.forget(target_key)
        await self.results.invalidate(target_key)
        if self._started is not None and self._started.done():
            await self.pool.evict(target_key)

    async def _path(self, target: Target) -> str:
        path = self._paths.get(target.key)
        if path is None:
            path = str(await self.storage.local_path(target.storage_key, target.sha256))
            self._paths[target.key] = path
            self._keys_by_model.setdefault(str(target.model_id), set()).add(target.key)
        return path

    async def refresh_gauges(self) -> None:
        """Model cache gauges, asked of the workers themselves (bounded: a scrape never hangs)."""
        if self._started is None or not self._started.done():
            return
        try:
            stats = await asyncio.wait_for(self.pool.cache_stats(), 1.0)
        except TimeoutError:
            return
        for worker, cache in enumerate(stats):
            if cache is None:
                continue
            label = str(worker)
            self.metrics.model_cache_bytes.labels(label).set(cache.get("bytes", 0))
            self.metrics.model_cache_models.labels(label).set(cache.get("items", 0))
            self.metrics.model_cache_evictions.labels(label).set(cache.get("evictions", 0))

    def health(self) -> dict[str, Any]:
        if self._started is None or not self._started.done():
            return {"status": "starting" if self._started else "idle", "workers": []}
        workers = [dataclasses.asdict(w) for w in self.pool.stats()]
        alive = sum(1 for w in workers if w["alive"])
        return {
            "status": "ok" if alive == len(workers) else "degraded",
            "workers": workers,
            "batcher": dataclasses.asdict(self.batcher.stats()),
        }


def _plain(values: list[Any]) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _json_safe(array: np.ndarray, rows: int) -> list[Any]:
    """numpy -> JSON values; NaN/inf become null; refuse shapes that do not match the input."""
    if array.shape[:1] != (rows,):
        raise ModelOutputInvalid(
            f"The model returned {array.shape[0] if array.ndim else 0} results for {rows} rows."
        )
    if array.size > MAX_OUTPUT_VALUES:
        raise ModelOutputInvalid("The model returned more values than a response may hold.")
    values = array.tolist()
    if array.dtype.kind == "f" and not _all_finite(values, array):
        values = _nulls(values)
    return list(values)


def _all_finite(values: list[Any], array: np.ndarray) -> bool:
    """Are all of ``array``'s values finite? For the usual few rows, summing the Python floats
    costs a tenth of a numpy call: a NaN or an infinity anywhere makes the sum non-finite (an
    overflowing sum only sends the values through ``_nulls``, which changes nothing then)."""
    if array.ndim == 1:
        return math.isfinite(sum(values))
    if array.ndim == 2:
        return math.isfinite(sum(map(sum, values)))
    return bool(np.isfinite(array).all())


def _nulls(value: Any) -> Any:
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _cached(outcome: Outcome) -> dict[str, Any]:
    return {
        "prediction": outcome.prediction,
        "probabilities": outcome.probabilities,
        "classes": outcome.classes,
    }
