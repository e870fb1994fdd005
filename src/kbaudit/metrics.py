"""Prometheus metrics, on a registry of the container's own (so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "kbaudit_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "kbaudit_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.refused_keys = Counter(
            "kbaudit_refused_keys",
            "API keys refused, at the API or the console's sign-in: refused (wrong, unknown"
            " or revoked) or throttled (too many wrong ones from one address or for one key).",
            ["outcome"],
            registry=self.registry,
        )
        self.records_written = Counter(
            "kbaudit_records_written",
            "Retrieval audit records received by the write route, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
