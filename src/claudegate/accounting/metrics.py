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
_BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


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
        self.refusals = Counter(
            "claudegate_refusals",
            "Calls the gateway refused before any upstream saw them, by error type (rate_limit_error: "
            "could not start before its deadline; billing_error: over a budget; overloaded_error: every "
            "upstream failing).",
            ["error_type"],
            registry=r,
        )
        self.queue_waiting = Gauge(
            "claudegate_queue_waiting_calls",
            "Calls waiting at admission for an upstream's model class.",
            ["upstream", "rate_class"],
            registry=r,
        )
        self.queue_in_flight = Gauge(
            "claudegate_queue_in_flight_calls",
            "Calls admitted and not finished, per upstream and model class.",
            ["upstream", "rate_class"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "claudegate_upstream_breaker_state",
            "Circuit breaker of each upstream: 0 closed, 1 half-open (on trial), 2 open.",
            ["upstream"],
            registry=r,
        )
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
        self.usage_rejected = Counter(
            "claudegate_usage_records_rejected",
            "Usage records the database refused, kept in the dead-letter file next to the spill file.",
            registry=r,
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
        self._count_spend(model, org, tokens, cost)
        if upstream_error is not None:
            series(self.upstream_errors, upstream, upstream_error).inc()

    def observe_spend(self, *, model: str, org: str, tokens: UsageTokens, cost: Decimal | None) -> None:
        """Tokens and cost spent outside a call the gateway answered (a Message Batch's requests, when their
        results are accounted), so the totals agree with the usage records."""
        self._count_spend(model, org, tokens, cost)

    def _count_spend(self, model: str, org: str, tokens: UsageTokens, cost: Decimal | None) -> None:
        series = self._labels
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

    def refused(self, error_type: str) -> None:
        self._labels(self.refusals, error_type).inc()

    def set_state(self, queues: list[tuple[str, str, int, int]], breakers: list[tuple[str, str]]) -> None:
        """The state gauges, set when /metrics is read: (upstream, class, waiting, in flight) per queue, and
        (upstream, breaker state) per upstream."""
        for upstream, rate_class, waiting, in_flight in queues:
            self._labels(self.queue_waiting, upstream, rate_class).set(waiting)
            self._labels(self.queue_in_flight, upstream, rate_class).set(in_flight)
        for upstream, state in breakers:
            self._labels(self.breaker_state, upstream).set(_BREAKER_VALUES.get(state, 2))

    def _labels(self, metric: _Metric, *values: str) -> _Metric:
        """``metric.labels(*values)``, made once per combination of values."""
        key = (metric, *values)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = metric.labels(*values)
        return cast(_Metric, found)

    def render(self) -> bytes:
        return generate_latest(self.registry)
