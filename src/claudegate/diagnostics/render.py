"""A call told for an operator: its usage record, admission wait and attempts; and a curl command that
reproduces it."""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Any

__all__ = ["curl_command", "describe_call"]

_FIELDS = (
    "request_id",
    "created_at",
    "org_id",
    "user_id",
    "key_id",
    "model",
    "status",
    "error_type",
    "upstream",
    "upstream_request_id",
    "message_id",
    "streamed",
    "cached",
    "attempts",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
)


def describe_call(record: dict[str, Any]) -> dict[str, Any]:
    """The record as JSON-ready data: its fields, the admission wait and each attempt."""
    described: dict[str, Any] = {}
    for name in _FIELDS:
        value = record.get(name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            value = str(value)  # Decimal cost
        described[name] = value
    detail = record.get("detail") or {}
    described["admission_wait_ms"] = detail.get("admission_wait_ms")
    described["attempt_log"] = detail.get("attempts", [])
    return described


def curl_command(base_url: str, payload: dict[str, Any]) -> str:
    """A shell command that sends the logged request again; credentials stay masked (``$CLAUDEGATE_KEY``)."""
    parts = ["curl", "-sS", f"{base_url.rstrip('/')}{payload['path']}"]
    for name, value in payload["headers"]:
        if value == "***":
            secret = "$CLAUDEGATE_KEY" if name == "x-api-key" else "Bearer $CLAUDEGATE_KEY"
            parts += ["-H", f'"{name}: {secret}"']  # double quotes: the shell expands the variable
        else:
            parts += ["-H", shlex.quote(f"{name}: {value}")]
    body = payload["body"]
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    parts += ["--data-binary", shlex.quote(text)]
    return " ".join(parts)
