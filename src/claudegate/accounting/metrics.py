"""Prometheus metrics, in a registry of their own per gateway (no process-wide state).

Every finished call touches several labelled series. ``prometheus_client``'s ``labels()`` validates and
locks on each use (a few microseconds per series), so the series a call needs are looked up in a dict of
those already made and ``labels()`` runs only the first time a combination of labels is seen.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from claudegate.accounting.prices import UsageTokens

__all__ = ["GatewayMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

_Metric = TypeVar("_Metric", bound=MetricWrapperBase)


class GatewayMetrics:
    def __init__(self) -> None:
        self._series: dict[tuple[Any, ...], Any] = {}  # (metric, *label values) -> labelled series
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "claudegate_requests",
            "Calls answered, by HTTP status, model and organisation.",
            ["status", "model", "org"],
            registry=r,
        )
        self.latency = Histogram(
            "claudegate_request_duration_seconds",
            "Time from request to the last byte of the reply.",
            ["model", "streamed"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "claudegate_time_to_first_token_seconds",
            "Time from request to the first content of a stream.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "claudegate_tokens",
            "Tokens by kind (input, output, cache_write, cache_read).",
            ["kind", "model", "org"],
            registry=r,
        )
        self.cost = Counter(
            "claudegate_cost_usd", "Cost in US dollars at list prices.", ["model", "org"], registry=r
        )
        self.upstream_errors = Counter(
            "claudegate_upstream_errors",
            "Errors answered by an upstream or reaching it, by type.",
            ["upstream", "error_type"],
            registry=r,
        )
        self.in_flight = Gauge("claudegate_in_flight_calls", "Calls in progress.", registry=r)
        self.tool_loop_depth = Histogram(
            "claudegate_tool_loop_depth",
            "Model calls per tool loop (a tool runner's turns), observed when the loop ends.",
            ["outcome"],
            buckets=(1, 2, 3, 4, 5, 8, 10, 15, 20, 30, 50),
            registry=r,
        )
        self.usage_pending = Gauge(
            "claudegate_usage_records_pending", "Usage records not yet written to the database.", registry=r
        )

    def observe(
        self,
        *,
        status: int,
        model: str,
        org: str,
        streamed: bool,
        seconds: float,
        ttft_seconds: float | None,
        tokens: UsageTokens,
        cost: Decimal | None,
        upstream: str,
        upstream_error: str | None,
    ) -> None:
        """Everything one finished call adds to the metrics."""
        series = self._labels
        series(self.requests, str(status), model, org).inc()
        series(self.latency, model, "true" if streamed else "false").observe(seconds)
        if ttft_seconds is not None:
            series(self.ttft, model).observe(ttft_seconds)
        for kind, count in (
            ("input", tokens.input_tokens),
            ("output", tokens.output_tokens),
            ("cache_write", tokens.cache_creation_input_tokens),
            ("cache_read", tokens.cache_read_input_tokens),
        ):
            if count:
                series(self.tokens, kind, model, org).inc(count)
        if cost:
            series(self.cost, model, org).inc(float(cost))
        if upstream_error is not None:
            series(self.upstream_errors, upstream, upstream_error).inc()

    def _labels(self, metric: _Metric, *values: str) -> _Metric:
        """``metric.labels(*values)``, made once per combination of values."""
        key = (metric, *values)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = metric.labels(*values)
        return cast(_Metric, found)

    def render(self) -> bytes:
        return generate_latest(self.registry)
