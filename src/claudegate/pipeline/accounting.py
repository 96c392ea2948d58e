"""The end of every call: one usage record and its metrics, whatever happened to it."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any

from claudegate.accounting.access_log import ACCESS_LOGGER, access_fields, log_with_fields
from claudegate.accounting.attribution import attribution_from_headers
from claudegate.accounting.metrics import GatewayMetrics
from claudegate.accounting.prices import PriceTable
from claudegate.accounting.usage import UsageRecord, UsageWriter
from claudegate.alerts import Alerts
from claudegate.pipeline.relay import ReplyResult
from claudegate.pipeline.request import CallRequest

__all__ = ["Accountant"]


_access_log = logging.getLogger(ACCESS_LOGGER)


class Accountant:
    __slots__ = ("_alerts", "_log_payloads", "_metrics", "_prices", "_writer")

    def __init__(
        self,
        writer: UsageWriter,
        prices: PriceTable,
        metrics: GatewayMetrics,
        alerts: Alerts | None = None,
        *,
        log_payloads: bool = False,
    ) -> None:
        self._alerts = alerts
        self._writer = writer
        self._prices = prices
        self._metrics = metrics
        self._log_payloads = log_payloads  # prompts reach the log only when the settings ask for it

    @property
    def metrics(self) -> GatewayMetrics:
        return self._metrics

    def record(
        self,
        call: CallRequest,
        result: ReplyResult,
        *,
        upstream: str | None,
        attempts: int,
        cached: bool = False,
    ) -> Decimal | None:
        """Write the call's usage record, count it in the metrics, log its access line; return its cost."""
        usage = result.usage
        identity = call.identity
        model = result.model or call.model
        finished = time.perf_counter()
        status = result.status or 502
        if cached:
            cost: Decimal | None = Decimal(0)  # a reply from the cache reached no upstream
        else:
            cost = self._prices.cost(model, usage, batch=False) if model else None
        if result.error_type is None and status >= 400:
            result.error_type = "api_error"
        ttft = (result.first_token_at - call.started) if result.first_token_at else None
        attribution = attribution_from_headers(call.headers)
        latency_ms = (finished - call.started) * 1000
        ttft_ms = ttft * 1000 if ttft is not None else None
        self._writer.submit(
            UsageRecord(
                request_id=call.request_id,
                model=model,
                status=status,
                upstream_request_id=result.upstream_request_id,
                org_id=identity.org_id,
                user_id=identity.user_id,
                key_id=identity.key_id,
                upstream=upstream,
                error_type=result.error_type,
                usage=usage,  # final once the call has ended: sums made later are new (Usage.plus)
                cost_usd=cost,
                latency_ms=latency_ms,
                ttft_ms=ttft_ms,
                streamed=result.streamed,
                attempts=attempts,
                api=call.api,
                session_id=attribution.session_id,
                agent_id=attribution.agent_id,
                parent_agent_id=attribution.parent_agent_id,
                policy=call.policy,
                loop_id=call.loop_id,
                cached=cached,
                message_id=result.message_id,
                detail=_detail(result),
            )
        )
        if self._alerts is not None:
            self._alerts.observe_call(status)
        if _access_log.isEnabledFor(logging.INFO):
            fields = access_fields(
                request_id=call.request_id,
                upstream_request_id=result.upstream_request_id,
                org=identity.org_name,
                user=identity.user_name,
                key_id=identity.key_id,
                model=model,
                upstream=upstream,
                status=status,
                error_type=result.error_type,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_write_tokens=usage.cache_creation_input_tokens,
                cache_read_tokens=usage.cache_read_input_tokens,
                cost_usd=float(cost) if cost is not None else None,
                latency_ms=latency_ms,
                ttft_ms=ttft_ms,
                attempts=attempts,
                streamed=result.streamed,
            )
            if self._log_payloads and call.body and _access_log.isEnabledFor(logging.DEBUG):
                fields["request_body"] = call.body.decode("utf-8", "replace")
            log_with_fields(_access_log, logging.INFO, "call", fields)
        self._metrics.observe(
            status=status,
            model=model or "unknown",
            org=identity.org_name,
            streamed=result.streamed,
            seconds=finished - call.started,
            ttft_seconds=ttft,
            tokens=usage,
            cost=cost,
            upstream=upstream or "none",
            upstream_error=result.error_type
            if status >= 500 or result.error_type == "incomplete_stream"
            else None,
        )
        return cost


def _detail(result: ReplyResult) -> dict[str, Any] | None:
    """How the call went, for ``claudegate calls show``: None for a call that reached no upstream."""
    if not result.attempt_log:
        return None
    return {
        "admission_wait_ms": round(result.admission_wait_s * 1000, 3),
        "attempts": result.attempt_log,
    }
