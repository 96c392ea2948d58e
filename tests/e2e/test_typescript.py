"""The official TypeScript SDK streams through the gateway and ends up with what the Python SDK gets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.conftest import need_service
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.node

TS_DIR = Path(__file__).resolve().parent.parent / "ts"
MODEL = "claude-sonnet-4-6"


def run_script(stack: Stack, key: str, request: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    need_service(node is not None, "Node.js (node) on PATH")
    need_service((TS_DIR / "node_modules" / "@anthropic-ai" / "sdk").is_dir(), "npm ci in tests/ts")
    assert node is not None
    done = subprocess.run(
        [node, "stream.mjs", json.dumps(request)],
        cwd=TS_DIR,
        env={**os.environ, "GATEWAY_URL": stack.url, "GATEWAY_KEY": key},
        capture_output=True,
        text=True,
        timeout=30,
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
