"""Prometheus metrics, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "inferx_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "inferx_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "inferx_auth_failures_total",
            "Refused credentials by kind (password, api_key, jwt, refresh).",
            ["kind"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "inferx_rate_limited_total",
            "Requests refused by a rate limit, by limit name.",
            ["limit"],
            registry=self.registry,
        )

        self.requests_in_flight = 0  # kept by the middleware; the pool asks it (poll_s)
        Gauge(
            "inferx_http_requests_in_flight",
            "HTTP requests being served.",
            registry=self.registry,
        ).set_function(lambda: self.requests_in_flight)

        self.inference = InferenceMetrics(self.registry)
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def count_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request in ``http_requests`` and ``http_latency``, the labelled children
        kept at hand (``labels()`` costs more than the update)."""
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_latency.labels(method, route),
            )
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class InferenceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.predictions = Counter(
            "inferx_predictions_total",
            "Prediction requests by model, version and status.",
            ["model_id", "version", "status"],
            registry=registry,
        )
        self.inference_latency = Histogram(
            "inferx_inference_duration_seconds",
            "Time in the model (worker compute) per call.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_rows = Histogram(
            "inferx_batch_rows",
            "Rows per vectorised model call (adaptive batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=registry,
        )
        self.result_cache = Counter(
            "inferx_result_cache_total",
            "Prediction result cache lookups (hit, miss), and requests of versions whose inputs "
            "do not repeat, served without the cache (bypass).",
            ["outcome"],
            registry=registry,
        )
        self._prediction_counters: dict[tuple[object, int, str], Any] = {}
        self.log_dropped = Counter(
            "inferx_prediction_log_dropped_total",
            "Prediction log entries dropped because the buffer was full.",
            registry=registry,
        )
        self.model_cache_bytes = Gauge(
            "inferx_model_cache_bytes",
            "Bytes of models loaded, per inference worker.",
            ["worker"],
            registry=registry,
        )
        self.model_cache_models = Gauge(
            "inferx_model_cache_models",
            "Models loaded, per inference worker.",
            ["worker"],
            registry=registry,
        )
        self.model_cache_evictions = Gauge(
            "inferx_model_cache_evictions",
            "Models evicted from a worker's cache so far.",
            ["worker"],
            registry=registry,
        )

    def count_prediction(self, model_id: object, version: int, status: str) -> None:
        """``predictions`` for one (model, version, status), its labelled child kept at hand."""
        key = (model_id, version, status)
        counter = self._prediction_counters.get(key)
        if counter is None:
            counter = self.predictions.labels(str(model_id), str(version), status)
            self._prediction_counters[key] = counter
        counter.inc()
