"""Usage records for the requests of a Message Batch, read from its JSONL results."""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from claudegate.accounting.prices import PriceTable
from claudegate.accounting.usage import UsageRecord
from claudegate.store.rows import BatchOwner
from claudegate.wire.usage_tap import Usage

__all__ = ["batch_usage_records"]


def batch_usage_records(owner: BatchOwner, results: bytes, prices: PriceTable) -> Iterator[UsageRecord]:
    """One record per processed request: succeeded ones billed at batch prices, errored ones with their
    error type and no cost. Canceled and expired requests were never processed and are not billed."""
    for line in results.splitlines():
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        result = entry.get("result") if isinstance(entry, dict) else None
        if not isinstance(result, dict):
            continue
        request_id = f"{owner.batch_id}:{entry.get('custom_id')}"
        if result.get("type") == "succeeded" and isinstance(result.get("message"), dict):
            message = result["message"]
            usage = Usage.of(message.get("usage") or {})
            model = message.get("model") if isinstance(message.get("model"), str) else None
            yield UsageRecord(
                request_id=request_id,
                model=model,
                status=200,
                upstream_request_id=message.get("id"),
                org_id=owner.org_id,
                user_id=owner.user_id,
                key_id=owner.key_id,
                usage=usage,
                cost_usd=prices.cost(model, usage, batch=True) if model else None,
                batch=True,
            )
        elif result.get("type") == "errored":
            envelope = result.get("error")
            inner = envelope.get("error") if isinstance(envelope, dict) else None
            error: dict[str, object] = inner if isinstance(inner, dict) else {}
            yield UsageRecord(
                request_id=request_id,
                model=None,
                status=400 if error.get("type") == "invalid_request_error" else 500,
                org_id=owner.org_id,
                user_id=owner.user_id,
                key_id=owner.key_id,
                error_type=str(error.get("type") or "api_error"),
                batch=True,
            )
