"""Prometheus metrics, in a registry of their own per gateway (no process-wide state)."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from claudegate.accounting.prices import UsageTokens

__all__ = ["GatewayMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class GatewayMetrics:
    def __init__(self) -> None:
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
        self.requests.labels(str(status), model, org).inc()
        self.latency.labels(model, "true" if streamed else "false").observe(seconds)
        if ttft_seconds is not None:
            self.ttft.labels(model).observe(ttft_seconds)
        for kind, count in (
            ("input", tokens.input_tokens),
            ("output", tokens.output_tokens),
            ("cache_write", tokens.cache_creation_input_tokens),
            ("cache_read", tokens.cache_read_input_tokens),
        ):
            if count:
                self.tokens.labels(kind, model, org).inc(count)
        if cost:
            self.cost.labels(model, org).inc(float(cost))
        if upstream_error is not None:
            self.upstream_errors.labels(upstream, upstream_error).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
