"""The official TypeScript SDK, at its newest release (scripts/test installs it), streams and parses through
the gateway and ends up with what the Python SDK gets: text, tools, structured outputs, thinking signatures,
server tools and refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anthropic
import jsonschema
import pytest

from claudegate.wire.models import default_catalog
from tests.conftest import need_service
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.node

TS_DIR = Path(__file__).resolve().parent.parent / "ts"
MODEL = "claude-sonnet-4-6"


def run_script(
    stack: Stack, key: str, request: dict[str, Any], *args: str, script: str = "stream.mjs"
) -> dict[str, Any]:
    node = shutil.which("node")
    need_service(node is not None, "Node.js (node) on PATH")
    need_service(
        (TS_DIR / "node_modules" / "@anthropic-ai" / "sdk").is_dir(),
        "the TypeScript SDK in tests/ts (scripts/test installs the newest release from npm)",
    )
    assert node is not None
    command = [node, script, *args[:1], json.dumps(request), *args[1:]]
    done = subprocess.run(
        command,
        cwd=TS_DIR,
        env={**os.environ, "GATEWAY_URL": stack.url, "GATEWAY_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(
    "request_body",
    [
        pytest.param(
            {
                "model": MODEL,
                "max_tokens": 300,
                "messages": [{"role": "user", "content": "Tell me a story."}],
            },
            id="text",
        ),
        pytest.param(
            {
                "model": MODEL,
                "max_tokens": 300,
                "system": "You check the weather.",
                "messages": [{"role": "user", "content": "Weather in Oslo?"}],
                "tools": [
                    {
                        "name": "get_weather",
                        "description": "The weather in a city",
                        "input_schema": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                    }
                ],
                "tool_choice": {"type": "any"},
            },
            id="tool_use",
        ),
    ],
)
def test_typescript_sdk_streams_like_the_python_sdk(stack: Stack, request_body: dict[str, Any]) -> None:
    result = run_script(stack, stack.org_b.user_key, request_body)

    python = anthropic.Anthropic(base_url=stack.url, api_key=stack.org_b.user_key, max_retries=0)
    with python.messages.stream(**request_body) as stream:
        expected = stream.get_final_message()

    # The same blocks (the TypeScript SDK leaves out the fields that are null).
    assert [{k: v for k, v in block.items() if v is not None} for block in result["content"]] == [
        block.model_dump(mode="json", exclude_none=True) for block in expected.content
    ]
    text = "".join(block.text for block in expected.content if block.type == "text")
    assert result["text"] == text
    assert result["final_text"] == (text or None)
    assert result["stop_reason"] == expected.stop_reason
    assert result["usage"]["input_tokens"] == expected.usage.input_tokens
    assert result["usage"]["output_tokens"] == expected.usage.output_tokens
    assert result["model"] == expected.model
    assert result["request_id"]
    assert result["request_id"].startswith("req_011C")
    assert result["events"][0] == "message_start"
    assert result["events"][-1] == "message_stop"


def test_typescript_sdk_sees_the_gateways_auth_error(stack: Stack) -> None:
    request = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
    result = run_script(stack, "cg-" + "B" * 40, request)
    assert (result["error"], result["status"], result["type"]) == (
        "AuthenticationError",
        401,
        "authentication_error",
    )


# -- Current replies: structured outputs, thinking signatures, server tools, early stops -------------------

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": ["new", "paid", "shipped"]},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
                "required": ["sku", "quantity"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["order_id", "status", "lines"],
    "additionalProperties": False,
}


def strict_python(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=stack.url, api_key=stack.org_b.user_key, max_retries=0, _strict_response_validation=True
    )


@pytest.mark.parametrize("mode", ["parse", "stream"])
def test_typescript_sdk_parses_structured_output(stack: Stack, mode: str) -> None:
    request = {
        "model": MODEL,
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "Place my order."}],
        "output_config": {"format": {"type": "json_schema", "schema": ORDER_SCHEMA}},
    }
    result = run_script(stack, stack.org_b.user_key, request, mode, script="replies.mjs")

    jsonschema.validate(result["parsed_output"], ORDER_SCHEMA, format_checker=jsonschema.FormatChecker())
    expected = strict_python(stack).messages.create(**request)
    assert result["parsed_output"] == json.loads(expected.content[0].text)  # type: ignore[union-attr]


def test_typescript_sdk_streams_thinking_with_its_signature(stack: Stack) -> None:
    request = {
        "model": MODEL,
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Think, then answer."}],
    }
    result = run_script(stack, stack.org_b.user_key, request, "stream", script="replies.mjs")

    thinking = result["content"][0]
    assert thinking["type"] == "thinking"
    assert thinking["signature"]
    assert result["signatures"] == [thinking["signature"]]
    expected = strict_python(stack).messages.create(**request)
    assert thinking["signature"] == expected.content[0].signature  # type: ignore[union-attr]
    assert result["usage"]["output_tokens_details"] == {
        "thinking_tokens": expected.usage.output_tokens_details.thinking_tokens
    }  # type: ignore[union-attr]


def test_typescript_sdk_reads_server_tool_blocks_and_usage(stack: Stack) -> None:
    request = {
        "model": MODEL,
        "max_tokens": 1000,
        "tools": [
            {"type": "web_search_20250305", "name": "web_search"},
            {"type": "code_execution_20250825", "name": "code_execution"},
        ],
        "messages": [{"role": "user", "content": "Search for the tallest tower and calculate its height."}],
    }
    result = run_script(stack, stack.org_b.user_key, request, "stream", script="replies.mjs")

    expected = strict_python(stack).messages.create(**request)
    assert [block["type"] for block in result["content"]] == [block.type for block in expected.content]
    assert [block["type"] for block in result["content"]] == [
        "server_tool_use",
        "web_search_tool_result",
        "server_tool_use",
        "bash_code_execution_tool_result",
        "text",
    ]
    assert result["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}
    assert result["container"]["id"] == expected.container.id  # type: ignore[union-attr]


def test_typescript_sdk_sees_a_refusal_and_its_details(stack: Stack) -> None:
    request = {
        "model": MODEL,
        "max_tokens": 500,
        "messages": [{"role": "user", "content": "Tell me a story."}],
    }
    result = run_script(stack, stack.org_b.user_key, request, "stream", "refusal:cyber", script="replies.mjs")

    assert result["stop_reason"] == "refusal"
    assert result["stop_details"]["category"] == "cyber"
    assert result["events"][-1] == "message_stop"


def test_typescript_sdk_answers_through_the_gateway_for_every_listed_model(stack: Stack) -> None:
    request = {"max_tokens": 20, "messages": [{"role": "user", "content": "Say hello."}]}
    result = run_script(stack, stack.org_b.user_key, request, script="models.mjs")

    listed = [model.id for model in default_catalog().listed()]
    assert [reply["id"] for reply in result["replies"]] == listed  # every page, in the API's order
    for reply in result["replies"]:
        assert reply["display_name"]
        for kind in ("created", "streamed"):
            assert reply[kind]["model"] == reply["id"], reply
            assert reply[kind]["stop_reason"] in ("end_turn", "max_tokens"), reply
            assert reply[kind]["output_tokens"] > 0, reply
