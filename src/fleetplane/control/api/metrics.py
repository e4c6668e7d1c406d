"""Prometheus metrics of the server itself, in a registry per app (tests build many apps)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST as CONTENT_TYPE,
)
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fleetplane_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fleetplane_http_request_duration_seconds",
            "Time to the response's first byte, by method and route template.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.watches = Gauge(
            "fleetplane_watches_open", "Watch streams currently open.", registry=self.registry
        )
        self.watch_events = Counter(
            "fleetplane_watch_events_sent_total",
            "Events sent to watchers, by type.",
            ["type"],
            registry=self.registry,
        )
        self.resource_version = Gauge(
            "fleetplane_store_resource_version",
            "Highest resource version this process has seen committed.",
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "fleetplane_auth_failures_total",
            "Requests refused for authentication (401) or authorisation (403), by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "fleetplane_rate_limited_total",
            "Write requests refused with 429.",
            registry=self.registry,
        )

    def observe_version(self, version: int) -> None:
        self.resource_version.set(version)

    def render(self) -> bytes:
        return generate_latest(self.registry)
