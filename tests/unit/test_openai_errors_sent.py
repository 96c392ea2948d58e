"""Errors the gateway makes itself, as the OpenAI door sends them: OpenAI's envelope and the headers the
SDKs act on (``retry-after`` on a 429, ``x-should-retry: false`` on a spent budget)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from claudegate.errors import AuthenticationError, ClaudegateError, RateLimitError
from claudegate.openai import UnsupportedParameterError
from claudegate.pipeline.budgets import BudgetExceededError
from claudegate.runtime.call import GatewayCall
from claudegate.server.openai_routes import send_openai_error


async def sent(error: ClaudegateError) -> tuple[int, dict[str, str], dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "path": "/v1/chat/completions", "method": "POST", "headers": []}
    await send_openai_error(GatewayCall(scope, receive, send), error)
    start, body = messages
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, orjson.loads(body["body"])["error"]


async def test_a_refusal_at_admission_is_a_429_with_retry_after() -> None:
    status, headers, error = await sent(RateLimitError("the queue is full", retry_after=2.2))
    assert status == 429
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("3", "2200")
    assert headers["x-claudegate-origin"] == "gateway"
    assert headers["x-request-id"].startswith("req_cg_")
    assert error == {
        "message": "the queue is full",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


async def test_a_spent_budget_is_insufficient_quota_not_to_be_retried() -> None:
    resets = datetime.now(UTC) + timedelta(hours=2)
    status, headers, error = await sent(BudgetExceededError("daily budget spent", resets_at=resets))
    assert status == 429
    assert headers["x-should-retry"] == "false"
    assert 7000 <= int(headers["retry-after"]) <= 7200
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")


async def test_a_bad_key_and_an_untranslatable_field() -> None:
    status, _, error = await sent(AuthenticationError("invalid x-api-key"))
    assert (status, error["code"]) == (401, "invalid_api_key")
    status, _, error = await sent(UnsupportedParameterError("n", "n: only one choice"))
    assert (status, error["param"], error["code"]) == (400, "n", "unsupported_parameter")
