"""The official ``openai`` npm package as a client of the gateway's Chat Completions door: what a JavaScript
program gets from a reply, a stream, tool calls, images, cached tokens, and the SDK's exception classes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from claudegate.store import Store
from tests.conftest import need_service
from tests.e2e.conftest import Stack, Tenant, make_tenant

pytestmark = pytest.mark.node

TS_DIR = Path(__file__).resolve().parent.parent / "ts"
MODEL = "claude-sonnet-4-6"


@pytest.fixture
async def tenant(stack: Stack) -> Tenant:
    return await make_tenant(stack.database_url, f"openai-ts-{uuid.uuid4().hex[:8]}")


def run(stack: Stack, key: str, scenario: str) -> dict[str, Any]:
    node = shutil.which("node")
    need_service(node is not None, "Node.js (node) on PATH")
    need_service((TS_DIR / "node_modules" / "openai").is_dir(), "the npm packages in tests/ts (scripts/test)")
    assert node is not None
    done = subprocess.run(
        [node, "openai.mjs", scenario, MODEL],
        cwd=TS_DIR,
        env={**os.environ, "GATEWAY_URL": stack.url, "GATEWAY_KEY": key},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    output: dict[str, Any] = json.loads(done.stdout)
    return output


def result(stack: Stack, key: str, scenario: str) -> dict[str, Any]:
    output = run(stack, key, scenario)
    assert "error" not in output, output
    answer: dict[str, Any] = output["result"]
    return answer


def error(stack: Stack, key: str, scenario: str) -> dict[str, Any]:
    output = run(stack, key, scenario)
    assert "error" in output, output
    raised: dict[str, Any] = output["error"]
    assert raised["is_api_error"], raised
    return raised


def test_a_completion(stack: Stack, tenant: Tenant) -> None:
    reply = result(stack, tenant.key, "create")
    assert (reply["object"], reply["model"], reply["finish_reason"]) == ("chat.completion", MODEL, "stop")
    assert reply["content"]
    usage = reply["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}


def test_a_text_stream_with_usage(stack: Stack, tenant: Tenant) -> None:
    reply = result(stack, tenant.key, "stream_text")
    assert reply["objects"] == ["chat.completion.chunk"]
    assert len(reply["text"].split()) > 3
    assert reply["finish_reasons"][-1] == "stop"
    assert set(reply["finish_reasons"][:-1]) == {None}
    assert reply["last"]["choices"] == []
    assert reply["last"]["usage"]["completion_tokens"] > 0


def test_a_streamed_tool_call_accumulated_by_the_sdk(stack: Stack, tenant: Tenant) -> None:
    reply = result(stack, tenant.key, "stream_tools")
    assert reply["finish_reason"] == "tool_calls"
    [call] = reply["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"])["city"], str)
    assert reply["argument_deltas"] > 1


def test_a_tool_round_trip(stack: Stack, tenant: Tenant) -> None:
    reply = result(stack, tenant.key, "round_trip")
    assert reply["first"]["finish_reason"] == "tool_calls"
    assert reply["first"]["tool_calls"][0]["id"].startswith("toolu_")
    assert reply["second"]["finish_reason"] == "stop"
    assert reply["second"]["content"]


def test_image_input(stack: Stack, tenant: Tenant) -> None:
    reply = result(stack, tenant.key, "image")
    assert reply["pixel"]["content"]
    # The web image is not fetched by the simulator and is charged as a full-size one.
    assert reply["web"]["usage"]["prompt_tokens"] > reply["pixel"]["usage"]["prompt_tokens"] + 1000


def test_json_schema_output(stack: Stack, tenant: Tenant) -> None:
    reply = result(stack, tenant.key, "json_schema")
    jsonschema.validate(
        json.loads(reply["content"]),
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["city", "population"],
            "additionalProperties": False,
        },
    )


def test_cached_tokens_on_the_second_call_of_a_long_conversation(stack: Stack, tenant: Tenant) -> None:
    reply = result(stack, tenant.key, "cached")
    assert reply["first"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = reply["second"]["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0.99 * reply["first"]["prompt_tokens"]


def test_models_in_openai_shape(stack: Stack, tenant: Tenant) -> None:
    reply = result(stack, tenant.key, "models")
    assert MODEL in reply["ids"]
    assert reply["objects"] == ["model"]


def test_errors_are_the_sdks_classes(stack: Stack, tenant: Tenant) -> None:
    bad_key = error(stack, "cg-not-a-key", "create")
    assert (bad_key["class"], bad_key["status"], bad_key["code"]) == (
        "AuthenticationError",
        401,
        "invalid_api_key",
    )
    untranslatable = error(stack, tenant.key, "error_n")
    assert (untranslatable["class"], untranslatable["param"]) == ("BadRequestError", "n")
    unknown_model = error(stack, tenant.key, "error_model")
    assert (unknown_model["class"], unknown_model["code"]) == ("NotFoundError", "model_not_found")
    limited = error(stack, tenant.key, "error_rate_limit")
    assert (limited["class"], limited["code"]) == ("RateLimitError", "rate_limit_exceeded")
    assert int(limited["retry_after"]) >= 1
    assert limited["request_id"].startswith("req_cg_")


async def test_a_spent_budget_is_a_rate_limit_error_the_sdk_does_not_retry(
    stack: Stack, tenant: Tenant
) -> None:
    store = await Store.open(stack.database_url, upgrade=False)
    try:
        await store.budgets.update(org_id=tenant.org_id, changes={"daily_tokens": 10})
    finally:
        await store.close()
    spent = error(stack, tenant.key, "error_retried")
    assert (spent["class"], spent["code"], spent["type"]) == (
        "RateLimitError",
        "insufficient_quota",
        "insufficient_quota",
    )
    assert spent["should_retry"] == "false"
