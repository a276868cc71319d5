"""Prometheus metrics, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
