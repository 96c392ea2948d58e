"""Replies as current clients read them: the installed SDK, with strict response validation on, parses every
kind of reply and stream the simulator sends (thinking, redacted thinking, tools, structured outputs, server
tools, early stops), on ``messages`` and ``beta.messages``; the usage fields are filled as the API fills them.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import jsonschema
import pydantic
import pytest
from anthropic.types import Message

from claudegate.simulator.generation import REDACTED_THINKING_TRIGGER
from tests.integration.simulator_support import MODEL, wait_until_ended

THINKING = {"type": "enabled", "budget_tokens": 1024}
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
WEB_FETCH = {"type": "web_fetch_20250910", "name": "web_fetch"}
CODE_OLD = {"type": "code_execution_20250522", "name": "code_execution"}
CODE = {"type": "code_execution_20250825", "name": "code_execution"}
ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "format": "uuid"},
        "placed": {"type": "string", "format": "date-time"},
        "status": {"enum": ["new", "paid", "shipped"]},
        "lines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
                "required": ["sku", "quantity"],
                "additionalProperties": False,
            },
        },
        "customer": {"$ref": "#/$defs/customer"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["order_id", "placed", "status", "lines", "customer"],
    "additionalProperties": False,
    "$defs": {
        "customer": {
            "type": "object",
            "properties": {"email": {"type": "string", "format": "email"}, "vip": {"type": "boolean"}},
            "required": ["email"],
            "additionalProperties": False,
        }
    },
}
STRICT_TOOL: dict[str, Any] = {
    "name": "book_flight",
    "description": "Book a flight.",
    "strict": True,
    "input_schema": {
        "type": "object",
        "properties": {
            "origin": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "destination": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "date": {"type": "string", "format": "date"},
            "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
            "cabin": {"enum": ["economy", "business"]},
            "extras": {"type": "array", "items": {"$ref": "#/$defs/extra"}},
        },
        "required": ["origin", "destination", "date", "passengers", "cabin"],
        "additionalProperties": False,
        "$defs": {
            "extra": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"bags": {"type": "integer", "minimum": 0}},
                        "required": ["bags"],
                        "additionalProperties": False,
                    },
                    {"type": "string", "enum": ["meal", "seat"]},
                ]
            }
        },
    },
}


class Customer(pydantic.BaseModel):
    email: str
    vip: bool = False


class Order(pydantic.BaseModel):
    order_id: str
    placed: datetime.datetime
    status: Literal["new", "paid", "shipped"]
    quantity: int = pydantic.Field(ge=1, le=10)
    customer: Customer
    notes: list[str] = []


@pytest.fixture(scope="module")
def client(simulator_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=simulator_url, api_key="sk-replies", max_retries=0, _strict_response_validation=True
    ) as sdk:
        yield sdk


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def both(client: anthropic.Anthropic, **params: Any) -> tuple[Message, Message]:
    """The same request as JSON and as a stream (every event validated), through messages and beta."""
    params = {"model": MODEL, "max_tokens": 3000, **params}
    fault = params.pop("fault", None)
    if fault:
        params["extra_headers"] = {"x-simulator-fault": fault}
    message = client.messages.create(**params)
    with client.messages.stream(**params) as stream:
        for _event in stream:
            pass
        streamed = stream.get_final_message()
    beta = client.beta.messages.create(**params)
    with client.beta.messages.stream(**params) as beta_stream:
        beta_streamed = beta_stream.get_final_message()
    assert wire(beta) == wire(message)
    assert wire(beta_streamed) == wire(streamed)
    return message, streamed


def wire(message: Any) -> dict[str, Any]:
    """A message as sent, without what differs between two identical requests (its id, the container's
    expiry) or what the stream helpers add (parsed_output)."""
    data: dict[str, Any] = message.model_dump(mode="json", exclude_none=True, exclude={"id"})
    for block in data["content"]:
        block.pop("parsed_output", None)
    if data.get("container"):
        data["container"].pop("expires_at")
    return data


def test_a_text_reply_carries_every_current_field(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=200, messages=ask("Hello"))
    body = raw.http_response.json()
    for name in ("stop_details", "container"):
        assert body[name] is None, name
    usage = body["usage"]
    assert usage["service_tier"] == "standard"
    assert usage["inference_geo"] == "global"
    assert usage["output_tokens_details"] == {"thinking_tokens": 0}
    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    assert "server_tool_use" not in usage  # no server tool offered


def test_inference_geo_and_speed_are_reported_as_asked(client: anthropic.Anthropic) -> None:
    message, streamed = both(client, messages=ask("Hello"), inference_geo="us", speed="fast")
    for reply in (message, streamed):
        assert reply.usage.inference_geo == "us"
        assert reply.usage.speed == "fast"


@pytest.mark.parametrize(
    "thinking",
    [THINKING, {"type": "adaptive"}, {"type": "enabled", "budget_tokens": 1024, "display": "omitted"}],
    ids=["enabled", "adaptive", "omitted"],
)
def test_thinking_blocks_carry_a_signature_in_json_and_streams(
    client: anthropic.Anthropic, thinking: dict[str, Any]
) -> None:
    message, streamed = both(client, messages=ask("Think first"), thinking=thinking)
    assert wire(streamed) == wire(message)
    block = message.content[0]
    assert block.type == "thinking"
    assert base64.b64decode(block.signature, validate=True)
    assert (block.thinking == "") is (thinking.get("display") == "omitted")
    details = message.usage.output_tokens_details
    assert details is not None
    assert 0 < details.thinking_tokens < message.usage.output_tokens


def test_the_documented_test_string_gets_redacted_thinking(client: anthropic.Anthropic) -> None:
    message, streamed = both(client, messages=ask(REDACTED_THINKING_TRIGGER), thinking=THINKING)
    assert wire(streamed) == wire(message)
    assert [block.type for block in message.content] == ["redacted_thinking", "text"]
    assert message.content[0].data  # type: ignore[union-attr]
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens > 0


def test_structured_output_text_is_json_valid_against_the_schema(client: anthropic.Anthropic) -> None:
    validator = jsonschema.Draft202012Validator(
        ORDER_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    seen = set()
    for n in range(8):
        output_config = {"format": {"type": "json_schema", "schema": ORDER_SCHEMA}}
        message, streamed = both(client, messages=ask(f"Order number {n}"), output_config=output_config)
        assert wire(streamed) == wire(message)
        assert [block.type for block in message.content] == ["text"]
        assert message.stop_reason == "end_turn"
        text = message.content[0].text  # type: ignore[union-attr]
        validator.validate(json.loads(text))
        seen.add(text)
    assert len(seen) == 8  # different requests, different values


def test_parse_with_a_pydantic_model_gives_the_parsed_output(client: anthropic.Anthropic) -> None:
    for n in range(5):
        parsed = client.messages.parse(
            model=MODEL, max_tokens=2000, messages=ask(f"Order {n}"), output_format=Order
        )
        order = parsed.parsed_output
        assert isinstance(order, Order)
        assert 1 <= order.quantity <= 10  # a bound the SDK can only state in the schema's description
        beta = client.beta.messages.parse(
            model=MODEL, max_tokens=2000, messages=ask(f"Order {n}"), output_format=Order
        )
        assert beta.parsed_output == order
        with client.messages.stream(
            model=MODEL, max_tokens=2000, messages=ask(f"Order {n}"), output_format=Order
        ) as stream:
            assert stream.get_final_message().parsed_output == order


def test_strict_tool_inputs_are_valid_against_their_schema(client: anthropic.Anthropic) -> None:
    validator = jsonschema.Draft202012Validator(
        STRICT_TOOL["input_schema"], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for n in range(10):
        message, streamed = both(
            client,
            messages=ask(f"Fly me somewhere, trip {n}"),
            tools=[STRICT_TOOL],
            tool_choice={"type": "tool", "name": "book_flight"},
        )
        assert wire(streamed) == wire(message)
        assert message.stop_reason == "tool_use"
        (call,) = [block for block in message.content if block.type == "tool_use"]
        validator.validate(call.input)


@pytest.mark.parametrize(
    ("tools", "text", "kinds", "searches", "fetches"),
    [
        ([WEB_SEARCH], "Search for the tallest tower", ["server_tool_use", "web_search_tool_result"], 1, 0),
        (
            [WEB_FETCH],
            "Read https://example.org/a for me",
            ["server_tool_use", "web_fetch_tool_result"],
            0,
            1,
        ),
        (
            [WEB_SEARCH, WEB_FETCH],
            "Search, then read https://example.org/b",
            ["server_tool_use", "web_search_tool_result", "server_tool_use", "web_fetch_tool_result"],
            1,
            1,
        ),
        ([CODE_OLD], "Calculate six times seven", ["server_tool_use", "code_execution_tool_result"], 0, 0),
        ([CODE], "Calculate six times seven", ["server_tool_use", "bash_code_execution_tool_result"], 0, 0),
        ([WEB_SEARCH], "Just say hello", [], 0, 0),
        ([WEB_SEARCH, CODE], "Summarise my research notes", [], 0, 0),
    ],
    ids=[
        "web-search",
        "web-fetch",
        "search-and-fetch",
        "code-execution-20250522",
        "code-execution",
        "unused",
        "not-asked",
    ],
)
def test_server_tools_return_their_blocks_and_usage(
    client: anthropic.Anthropic,
    tools: list[dict[str, Any]],
    text: str,
    kinds: list[str],
    searches: int,
    fetches: int,
) -> None:
    message, streamed = both(client, messages=ask(text), tools=tools)
    assert wire(streamed) == wire(message)
    assert [block.type for block in message.content] == [*kinds, "text"]
    assert message.stop_reason == "end_turn"
    uses = [block for block in message.content if block.type == "server_tool_use"]
    results = [block for block in message.content if block.type.endswith("_tool_result")]
    assert [use.id for use in uses] == [result.tool_use_id for result in results]  # type: ignore[union-attr]
    assert all(use.id.startswith("srvtoolu_") for use in uses)
    for reply in (message, streamed):
        assert reply.usage.server_tool_use is not None
        assert reply.usage.server_tool_use.web_search_requests == searches
        assert reply.usage.server_tool_use.web_fetch_requests == fetches
    (answer,) = [block for block in message.content if block.type == "text"]
    searched = [block for block in results if block.type == "web_search_tool_result"]
    assert [citation.url for citation in answer.citations or []] == [
        block.content[0].url  # type: ignore[union-attr]
        for block in searched
    ]
    code = any(t["name"] == "code_execution" for t in tools) and kinds
    assert (message.container is not None) is bool(code)
    if message.container is not None:
        assert message.container.expires_at > datetime.datetime.now(datetime.UTC)
        assert streamed.container is not None
        assert streamed.container.id == message.container.id


def test_a_server_tool_is_used_when_tool_choice_names_it(client: anthropic.Anthropic) -> None:
    message, _ = both(
        client, messages=ask("Hello"), tools=[WEB_SEARCH], tool_choice={"type": "tool", "name": "web_search"}
    )
    assert message.content[0].type == "server_tool_use"
    assert message.content[0].name == "web_search"


@pytest.mark.parametrize("category", [None, "cyber"])
def test_a_refusal_on_request_stops_with_its_details(
    client: anthropic.Anthropic, category: str | None
) -> None:
    fault = "refusal" + (f":{category}" if category else "")
    message, streamed = both(client, messages=ask("Hello there, tell me a story"), fault=fault)
    full = client.messages.create(model=MODEL, max_tokens=3000, messages=ask("Hello there, tell me a story"))
    for reply in (message, streamed):
        assert reply.stop_reason == "refusal"
        assert reply.stop_details is not None
        assert reply.stop_details.type == "refusal"
        assert reply.stop_details.category == category
        assert reply.usage.output_tokens < full.usage.output_tokens
    assert wire(streamed) == wire(message)


def test_a_paused_turn_ends_after_its_server_tool_calls(client: anthropic.Anthropic) -> None:
    message, streamed = both(
        client, messages=ask("Search for the tallest tower"), tools=[WEB_SEARCH], fault="pause_turn"
    )
    for reply in (message, streamed):
        assert reply.stop_reason == "pause_turn"
        assert [block.type for block in reply.content] == ["server_tool_use", "web_search_tool_result"]
    # The client sends the paused turn back as it is, and the reply goes on.
    resumed = client.messages.create(
        model=MODEL,
        max_tokens=3000,
        tools=[WEB_SEARCH],  # type: ignore[list-item]
        messages=[*ask("Search for the tallest tower"), message.to_param()],  # type: ignore[list-item]
    )
    assert resumed.stop_reason == "end_turn"
    assert [block.type for block in resumed.content] == ["text"]  # it goes on, without searching again


def test_the_context_window_filling_up_stops_the_reply(client: anthropic.Anthropic) -> None:
    message, streamed = both(client, messages=ask("Hello"), fault="model_context_window_exceeded")
    full = client.messages.create(model=MODEL, max_tokens=3000, messages=ask("Hello"))
    for reply in (message, streamed):
        assert reply.stop_reason == "model_context_window_exceeded"
        assert 0 < reply.usage.output_tokens < full.usage.output_tokens
        assert full.content[0].text.startswith(reply.content[0].text)  # type: ignore[union-attr]


def test_an_unknown_refusal_category_is_a_400_that_lists_the_known_ones(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=MODEL,
            max_tokens=50,
            messages=ask("Hello"),
            extra_headers={"x-simulator-fault": "refusal:weather"},
        )
    assert "general_harms" in caught.value.message


def test_cut_replies_still_validate(client: anthropic.Anthropic) -> None:
    message, _ = both(client, messages=ask("Hello"), max_tokens=5)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    stopped, _ = both(client, messages=ask("Hello"), stop_sequences=[" the", " a", "."])
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence in (" the", " a", ".")
    tool_cut, _ = both(
        client, messages=ask("Fly"), tools=[STRICT_TOOL], tool_choice={"type": "any"}, max_tokens=4
    )
    assert tool_cut.stop_reason == "max_tokens"


def test_beta_replies_report_context_management_when_asked(client: anthropic.Anthropic) -> None:
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 200,
        "messages": ask("Hello"),
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "betas": ["context-management-2025-06-27"],
    }
    message = client.beta.messages.create(**params)
    with client.beta.messages.stream(**params) as stream:
        streamed = stream.get_final_message()
    for reply in (message, streamed):
        assert reply.context_management is not None
        assert reply.context_management.applied_edits == []
    plain = client.beta.messages.create(model=MODEL, max_tokens=200, messages=ask("Hello"))
    assert plain.context_management is None


def test_batch_results_carry_the_same_replies(client: anthropic.Anthropic) -> None:
    kinds: dict[str, dict[str, Any]] = {
        "structured": {"output_config": {"format": {"type": "json_schema", "schema": ORDER_SCHEMA}}},
        "thinking": {"thinking": THINKING},
        "search": {"tools": [WEB_SEARCH], "messages": ask("Search for the tallest tower")},
    }
    requests = [
        {"custom_id": name, "params": {"model": MODEL, "max_tokens": 3000, "messages": ask("Hi"), **extra}}
        for name, extra in kinds.items()
    ]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    wait_until_ended(client, batch.id)

    results = {item.custom_id: item.result for item in client.messages.batches.results(batch.id)}
    for name, extra in kinds.items():
        result = results[name]
        assert result.type == "succeeded", result
        answered = client.messages.create(model=MODEL, max_tokens=3000, **{"messages": ask("Hi"), **extra})
        assert result.message.content == answered.content
        assert result.message.usage.service_tier == "batch"


def test_the_older_output_format_field_still_gets_json(client: anthropic.Anthropic) -> None:
    """Clients from before output_config.format sent the schema as a top-level ``output_format``."""
    message = client.beta.messages.create(
        model=MODEL,
        max_tokens=2000,
        messages=ask("An order, please"),
        betas=["structured-outputs-2025-11-13"],
        extra_body={"output_format": {"type": "json_schema", "schema": ORDER_SCHEMA}},
    )
    jsonschema.validate(
        json.loads(message.content[0].text),  # type: ignore[union-attr]
        ORDER_SCHEMA,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
