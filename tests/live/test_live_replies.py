"""The simulator's replies against Anthropic's own: the same checks the simulator passes, run against
api.anthropic.com, so that a change in the real API shows up as a failure here before users meet it.

Not part of CI (no key, no internet). Run them with a real key:

    CLAUDEGATE_LIVE=1 ANTHROPIC_API_KEY=sk-ant-... .venv/bin/pytest tests/live -q

``CLAUDEGATE_LIVE_MODEL`` picks the model (default claude-sonnet-4-6). With CLAUDEGATE_LIVE=1 and no key
every test fails, so a misconfigured run never passes by skipping.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import anthropic
import jsonschema
import pytest

from claudegate.simulator.server import SimulatorServer
from claudegate.simulator.settings import SimulatorSettings
from tests.servers import running_in_thread

pytestmark = pytest.mark.skipif(
    os.environ.get("CLAUDEGATE_LIVE") != "1",
    reason="live checks against api.anthropic.com: set CLAUDEGATE_LIVE=1 and ANTHROPIC_API_KEY",
)
MODEL = os.environ.get("CLAUDEGATE_LIVE_MODEL", "claude-sonnet-4-6")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "population": {"type": "integer"},
        "landmarks": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["city", "population", "landmarks"],
    "additionalProperties": False,
}
TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "strict": True,
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def live() -> Iterator[anthropic.Anthropic]:
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        pytest.fail("CLAUDEGATE_LIVE=1 is set but ANTHROPIC_API_KEY is not: the live checks cannot run")
    with anthropic.Anthropic(api_key=key, max_retries=2, _strict_response_validation=True) as client:
        yield client


@pytest.fixture(scope="module")
def simulated() -> Iterator[anthropic.Anthropic]:
    with (
        running_in_thread(lambda: SimulatorServer(SimulatorSettings())) as server,
        anthropic.Anthropic(
            base_url=server.url,  # type: ignore[attr-defined]
            api_key="sk-live-compare",
            max_retries=0,
            _strict_response_validation=True,
        ) as client,
    ):
        yield client


def fields(message: anthropic.types.Message) -> tuple[set[str], set[str]]:
    """The message's and its usage's fields that are set, as the wire carried them."""
    data = message.model_dump(mode="json", exclude_none=True)
    return set(data), set(data["usage"])


def both(live: anthropic.Anthropic, simulated: anthropic.Anthropic, **params: Any) -> list[Any]:
    params = {"model": MODEL, "max_tokens": 2000, **params}
    replies = [live.messages.create(**params), simulated.messages.create(**params)]
    real, ours = (fields(reply) for reply in replies)
    # Whatever the API fills in, the simulator fills in too.
    assert real[0] <= ours[0], real[0] - ours[0]
    assert real[1] <= ours[1], real[1] - ours[1]
    return replies


def test_text_replies_have_the_fields_of_the_real_api(
    live: anthropic.Anthropic, simulated: anthropic.Anthropic
) -> None:
    both(live, simulated, max_tokens=50, messages=[{"role": "user", "content": "Say hello."}])


def test_structured_output_is_json_valid_against_the_schema(
    live: anthropic.Anthropic, simulated: anthropic.Anthropic
) -> None:
    output_config = {"format": {"type": "json_schema", "schema": SCHEMA}}
    for reply in both(
        live, simulated, output_config=output_config, messages=[{"role": "user", "content": "Paris facts"}]
    ):
        assert [block.type for block in reply.content] == ["text"]
        jsonschema.validate(json.loads(reply.content[0].text), SCHEMA)


def test_strict_tool_input_is_valid_against_its_schema(
    live: anthropic.Anthropic, simulated: anthropic.Anthropic
) -> None:
    params: dict[str, Any] = {
        "tools": [TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
    }
    for reply in both(live, simulated, **params):
        assert reply.stop_reason == "tool_use"
        (call,) = [block for block in reply.content if block.type == "tool_use"]
        jsonschema.validate(call.input, TOOL["input_schema"])


def test_thinking_streams_end_their_block_with_a_signature(
    live: anthropic.Anthropic, simulated: anthropic.Anthropic
) -> None:
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "What is 17 * 23?"}],
    }
    for client in (live, simulated):
        kinds: list[str] = []
        with client.messages.stream(**params) as stream:
            for event in stream:
                if event.type == "content_block_delta" and event.index == 0:
                    kinds.append(event.delta.type)
            final = stream.get_final_message()
        assert final.content[0].type == "thinking"
        assert final.content[0].signature
        assert kinds[-1] == "signature_delta"


def test_web_search_returns_its_blocks_and_counts_the_search(
    live: anthropic.Anthropic, simulated: anthropic.Anthropic
) -> None:
    params: dict[str, Any] = {
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
        "tool_choice": {"type": "tool", "name": "web_search"},
        "messages": [{"role": "user", "content": "Search the web: tallest building in the world"}],
    }
    for reply in both(live, simulated, **params):
        kinds = [block.type for block in reply.content]
        assert "server_tool_use" in kinds
        assert "web_search_tool_result" in kinds
        assert reply.usage.server_tool_use is not None
        assert reply.usage.server_tool_use.web_search_requests >= 1


def test_bad_input_is_the_same_400(live: anthropic.Anthropic, simulated: anthropic.Anthropic) -> None:
    for client in (live, simulated):
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(
                model=MODEL,
                max_tokens=10,
                messages=[{"role": "user", "content": "Hi"}],
                extra_body={"max_tokens": "20"},
            )
        assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert "max_tokens" in caught.value.message
