"""Prometheus metrics of one app, in a registry of its own (several apps never collide)."""

from __future__ import annotations

from typing import Any

from reasonrank.errors import require
from reasonrank.types import RankedResult


class ServerMetrics:
    """Requests, latencies, windows, tokens and parse statuses of one server."""

    def __init__(self) -> None:
        prom = require("prometheus_client", "server", "the server's /metrics")
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter(
            "reasonrank_http_requests", "HTTP requests by endpoint and status code",
            ["endpoint", "status"], registry=r,
        )
        self.latency = prom.Histogram(
            "reasonrank_http_request_duration_seconds", "HTTP request latency by endpoint",
            ["endpoint"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                     600),
        )
        self.in_flight = prom.Gauge(
            "reasonrank_rerank_requests_in_flight", "rerank requests being answered", registry=r
        )
        self.windows = prom.Counter(
            "reasonrank_windows", "sliding windows generated", registry=r
        )
        self.prompt_tokens = prom.Counter(
            "reasonrank_prompt_tokens", "prompt tokens of the generated windows", registry=r
        )
        self.output_tokens = prom.Counter(
            "reasonrank_output_tokens", "output tokens of the generated windows", registry=r
        )
        self.parse_status = prom.Counter(
            "reasonrank_window_parse_status", "windows by parse status", ["status"], registry=r
        )
        self.timeouts = prom.Counter(
            "reasonrank_http_client_timeouts", "connections closed because the client was too "
            "slow to send its request (phase: header or body)", ["phase"], registry=r,
        )
        self.refused = prom.Counter(
            "reasonrank_http_connections_refused", "connections answered 503 at the connection "
            "cap", registry=r,
        )

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def observe_result(self, result: RankedResult) -> None:
        for w in result.windows:
            self.windows.inc()
            self.parse_status.labels(status=w.status.value).inc()
            if w.prompt_tokens is not None:
                self.prompt_tokens.inc(w.prompt_tokens)
            if w.output_tokens is not None:
                self.output_tokens.inc(w.output_tokens)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        prom: Any = self._prom
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST
