"""Current replies through the gateway: the Python SDK with strict response validation on reads every kind
of reply and stream (thinking, structured outputs, server tools, early stops) through the gateway exactly as
it reads them from the upstream, for every model the upstream serves, and each call leaves one usage record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from tests.e2e.conftest import Stack, make_tenant
from tests.e2e.flow_support import usage_records

MODEL = "claude-sonnet-4-6"
ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "format": "uuid"},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 9},
        "gift": {"type": "boolean"},
    },
    "required": ["order_id", "quantity"],
    "additionalProperties": False,
}
CASES: dict[str, dict[str, Any]] = {
    "text": {},
    "thinking": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
    "adaptive-thinking": {"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}},
    "structured-output": {"output_config": {"format": {"type": "json_schema", "schema": ORDER_SCHEMA}}},
    "strict-tool": {
        "tools": [{"name": "place_order", "strict": True, "input_schema": ORDER_SCHEMA}],
        "tool_choice": {"type": "tool", "name": "place_order"},
    },
    "web-search": {
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "messages": [{"role": "user", "content": "Search for the tallest tower"}],
    },
    "web-fetch-and-code": {
        "tools": [
            {"type": "web_fetch_20250910", "name": "web_fetch"},
            {"type": "code_execution_20250825", "name": "code_execution"},
        ],
        "messages": [{"role": "user", "content": "Read https://example.org/data and calculate the mean"}],
    },
    "refusal": {"extra_headers": {"x-simulator-fault": "refusal:general_harms"}},
    "pause-turn": {
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "messages": [{"role": "user", "content": "Search for the tallest tower"}],
        "extra_headers": {"x-simulator-fault": "pause_turn"},
    },
    "context-window-exceeded": {"extra_headers": {"x-simulator-fault": "model_context_window_exceeded"}},
}


@pytest.fixture(scope="module")
def clients(stack: Stack) -> Iterator[tuple[anthropic.Anthropic, anthropic.Anthropic]]:
    """A strict client of the gateway and one of the simulator itself."""
    with (
        anthropic.Anthropic(
            base_url=stack.url, api_key=stack.org_a.key, max_retries=0, _strict_response_validation=True
        ) as gateway,
        anthropic.Anthropic(
            base_url=stack.simulator_url,
            api_key=f"sk-{uuid.uuid4().hex}",
            max_retries=0,
            _strict_response_validation=True,
        ) as direct,
    ):
        yield gateway, direct


def wire(message: Any) -> dict[str, Any]:
    data: dict[str, Any] = message.model_dump(mode="json", exclude={"id"})
    if data.get("container"):
        data["container"].pop("expires_at")
    return data


def streamed(client: anthropic.Anthropic, params: dict[str, Any]) -> tuple[list[str], Any]:
    with client.messages.stream(**params) as stream:
        events = [event.type for event in stream]
        return events, stream.get_final_message()


@pytest.mark.parametrize("case", CASES)
def test_every_kind_of_reply_reads_the_same_through_the_gateway(
    clients: tuple[anthropic.Anthropic, anthropic.Anthropic], case: str
) -> None:
    gateway, direct = clients
    params = {
        "model": MODEL,
        "max_tokens": 3000,
        "messages": [{"role": "user", "content": f"Hello ({case})"}],
        **CASES[case],
    }
    assert wire(gateway.messages.create(**params)) == wire(direct.messages.create(**params))
    assert wire(gateway.beta.messages.create(**params)) == wire(direct.beta.messages.create(**params))
    (through_events, through), (direct_events, straight) = streamed(gateway, params), streamed(direct, params)
    assert through_events == direct_events
    assert wire(through) == wire(straight)


@pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")  # still served
def test_every_served_model_reads_strictly_through_the_gateway(
    stack: Stack, clients: tuple[anthropic.Anthropic, anthropic.Anthropic]
) -> None:
    gateway, _ = clients
    listed = httpx2.get(
        f"{stack.url}/v1/models", params={"limit": 1000}, headers={"x-api-key": stack.org_a.key}
    ).json()  # read raw: how the models API itself reads is tested with it
    models = [model["id"] for model in listed["data"]]
    assert MODEL in models
    for model in models:
        params = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
        message = gateway.messages.create(**params)
        assert message.model == model
        _, final = streamed(gateway, params)
        assert final.model == model
        assert final.usage.output_tokens == message.usage.output_tokens


async def test_each_early_stop_leaves_one_usage_record(stack: Stack) -> None:
    tenant = await make_tenant(stack.database_url, f"early-stops-{uuid.uuid4().hex[:8]}")
    headers = {"x-api-key": tenant.key, "anthropic-version": "2023-06-01"}
    async with httpx2.AsyncClient(base_url=stack.url, headers=headers) as http:
        for fault in ("refusal", "pause_turn", "model_context_window_exceeded"):
            for stream in (False, True):
                body = {
                    "model": MODEL,
                    "max_tokens": 200,
                    "stream": stream,
                    "messages": [{"role": "user", "content": "Hi"}],
                }
                response = await http.post("/v1/messages", json=body, headers={"x-simulator-fault": fault})
                assert response.status_code == 200, response.text
                assert f'"stop_reason":"{fault}"' in response.text.replace(" ", "")

    records = await usage_records(stack.database_url, [tenant.key_id], 6)
    assert [(r["status"], r["streamed"]) for r in records] == [(200, False), (200, True)] * 3
    assert all(r["output_tokens"] > 0 and r["error_type"] is None for r in records)
