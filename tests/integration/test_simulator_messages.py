"""/v1/messages, count_tokens and models through the official SDK, sync and async, over loopback HTTP."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import anthropic
import jsonschema
import pytest

from claudegate.wire.tokens import count_text_tokens
from tests.integration.simulator_support import (
    HELLO,
    MODEL,
    async_client,
    image_block,
    jpeg_header,
    png,
    prose,
    sync_client,
)

WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather at a place.",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "location": {"type": "string", "description": "City and state, e.g. San Francisco, CA"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "threshold": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "when": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "options": {
                "type": "object",
                "properties": {"detailed": {"type": "boolean"}, "lang": {"type": "string", "minLength": 2}},
                "required": ["detailed", "lang"],
                "additionalProperties": False,
            },
            "mode": {"$ref": "#/$defs/mode"},
        },
        "required": ["location", "unit", "days", "threshold", "tags", "options", "mode"],
        "$defs": {"mode": {"anyOf": [{"type": "string", "enum": ["fast", "slow"]}, {"type": "null"}]}},
    },
}
SEARCH_TOOL: dict[str, Any] = {
    "name": "search",
    "description": "Search the web.",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}


def wire(content: list[Any]) -> list[dict[str, Any]]:
    """Content blocks as the API sent them (the stream helper adds ``parsed_output`` to its own classes)."""
    return [block.model_dump(exclude={"parsed_output"}) for block in content]


@pytest.fixture
def client(simulator_url: str) -> Any:
    with sync_client(simulator_url) as sdk:
        yield sdk


# -- create and stream -----------------------------------------------------------------------------------


def test_create_returns_a_complete_message_with_request_id_and_org_headers(
    client: anthropic.Anthropic,
) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=200, messages=HELLO)
    message = raw.parse()

    assert message.id.startswith("msg_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text.strip()
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == count_text_tokens(message.content[0].text)
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.service_tier == "standard"
    assert raw.headers["request-id"].startswith("req_")
    assert message._request_id == raw.headers["request-id"]
    assert raw.headers["anthropic-organization-id"]
    assert raw.headers["content-type"].startswith("application/json")


async def test_async_create_gets_the_same_reply_as_sync(
    simulator_url: str, client: anthropic.Anthropic
) -> None:
    messages = [{"role": "user", "content": "Tell me about token buckets."}]
    async with async_client(simulator_url) as aclient:
        from_async = await aclient.messages.create(model=MODEL, max_tokens=500, messages=messages)
    from_sync = client.messages.create(model=MODEL, max_tokens=500, messages=messages)

    assert wire(from_async.content) == wire(from_sync.content)
    assert from_async.usage.output_tokens == from_sync.usage.output_tokens
    assert from_async.id != from_sync.id


def test_stream_text_equals_the_non_streamed_reply(client: anthropic.Anthropic) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "Describe the simulator in a few sentences."}],
    }
    created = client.messages.create(**request)

    with client.messages.stream(**request) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) > 1, "the reply should arrive in several deltas"
    assert "".join(pieces) == created.content[0].text
    assert wire(final.content) == wire(created.content)
    assert final.stop_reason == created.stop_reason == "end_turn"
    assert final.usage.output_tokens == created.usage.output_tokens
    assert final.usage.input_tokens == created.usage.input_tokens


async def test_async_stream_text_equals_the_non_streamed_reply(simulator_url: str) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    async with async_client(simulator_url) as aclient:
        created = await aclient.messages.create(**request)
        async with aclient.messages.stream(**request) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()

    assert text == created.content[0].text
    assert final.usage.output_tokens == created.usage.output_tokens


def test_raw_event_stream_from_create_with_stream_true(client: anthropic.Anthropic) -> None:
    events = list(client.messages.create(model=MODEL, max_tokens=100, messages=HELLO, stream=True))
    kinds = [event.type for event in events]

    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert "ping" not in kinds  # the SDK drops pings
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert kinds[-3] == "content_block_stop"


# -- tools -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool_choice",
    [{"type": "any"}, {"type": "tool", "name": "get_weather"}],
    ids=["any", "tool"],
)
def test_tool_use_stream_input_is_json_valid_against_the_tool_schema(
    client: anthropic.Anthropic, tool_choice: dict[str, Any]
) -> None:
    partial_json: list[str] = []
    with client.messages.stream(
        model=MODEL,
        max_tokens=1000,
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
        messages=[{"role": "user", "content": "What's the weather like in San Francisco?"}],
    ) as stream:
        for event in stream:
            if event.type == "input_json":
                partial_json.append(event.partial_json)
        final = stream.get_final_message()

    accumulated = json.loads("".join(partial_json))
    jsonschema.validate(accumulated, WEATHER_TOOL["input_schema"])
    tool_uses = [block for block in final.content if block.type == "tool_use"]
    assert len(tool_uses) == 1
    assert tool_uses[0].name == "get_weather"
    assert tool_uses[0].id.startswith("toolu_")
    assert tool_uses[0].input == accumulated
    assert final.stop_reason == "tool_use"


def test_streamed_tool_input_equals_the_non_streamed_input_character_for_character(
    client: anthropic.Anthropic,
) -> None:
    edit_tool = {
        "name": "str_replace_editor",
        "input_schema": {
            "type": "object",
            "properties": {"file_path": {"type": "string"}, "old_string": {"type": "string"},
                           "new_string": {"type": "string"}, "replace_all": {"type": "boolean"}},
            "required": ["file_path", "old_string", "new_string", "replace_all"],
        },
    }  # fmt: skip
    request: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1000,
        "tools": [edit_tool],
        "tool_choice": {"type": "tool", "name": "str_replace_editor"},
        "messages": [{"role": "user", "content": "Fix the typo in snake_case_module.py"}],
    }
    created = client.messages.create(**request)
    with client.messages.stream(**request) as stream:
        partial = "".join(event.partial_json for event in stream if event.type == "input_json")
    expected = next(block for block in created.content if block.type == "tool_use").input
    assert json.loads(partial) == expected
    assert set(expected) == {"file_path", "old_string", "new_string", "replace_all"}


def test_consecutive_requests_on_one_connection_answer_at_once(client: anthropic.Anthropic) -> None:
    """Replies must not wait out Nagle's algorithm against delayed ACKs (~40 ms each) on a kept-alive
    connection."""
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        client.messages.create(model=MODEL, max_tokens=20, messages=HELLO)
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.02, timings


def test_tool_choice_any_picks_one_of_several_tools_and_validates(client: anthropic.Anthropic) -> None:
    tools = [WEATHER_TOOL, SEARCH_TOOL]
    for n in range(6):
        message = client.messages.create(
            model=MODEL,
            max_tokens=1000,
            tools=tools,
            tool_choice={"type": "any"},
            messages=[{"role": "user", "content": f"Question number {n}"}],
        )
        (tool_use,) = [block for block in message.content if block.type == "tool_use"]
        schema = next(t["input_schema"] for t in tools if t["name"] == tool_use.name)
        jsonschema.validate(tool_use.input, schema)


def test_tool_round_trip_ends_with_a_text_answer(client: anthropic.Anthropic) -> None:
    question: dict[str, Any] = {"role": "user", "content": "Use get_weather for Paris, please."}
    first = client.messages.create(model=MODEL, max_tokens=1000, tools=[WEATHER_TOOL], messages=[question])
    assert first.stop_reason == "tool_use"  # tool_choice auto: the user named the tool
    tool_use = next(block for block in first.content if block.type == "tool_use")

    second = client.messages.create(
        model=MODEL,
        max_tokens=1000,
        tools=[WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18 C"}],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert [block.type for block in second.content] == ["text"]


def test_tool_choice_none_and_auto_without_mention_answer_in_text(client: anthropic.Anthropic) -> None:
    for choice in ({"type": "none"}, {"type": "auto"}):
        message = client.messages.create(
            model=MODEL,
            max_tokens=300,
            tools=[WEATHER_TOOL],
            tool_choice=choice,
            messages=HELLO,
        )
        assert [block.type for block in message.content] == ["text"]
        assert message.stop_reason == "end_turn"


def test_thinking_reply_has_a_signed_thinking_block_before_the_text(client: anthropic.Anthropic) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "messages": HELLO,
    }
    created = client.messages.create(**request)
    with client.messages.stream(**request) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()

    assert [block.type for block in created.content] == ["thinking", "text"]
    assert created.content[0].signature
    assert wire(final.content) == wire(created.content)
    assert "thinking" in kinds
    assert "signature" in kinds
    assert kinds.index("signature") < kinds.index("text")
    total = sum(
        count_text_tokens(getattr(block, "thinking", "") or getattr(block, "text", ""))
        for block in final.content
    )
    assert created.usage.output_tokens == total


# -- stop sequences, max_tokens, reply length --------------------------------------------------------------


def test_stop_sequence_cuts_the_reply_and_is_echoed(client: anthropic.Anthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "Say something long."}]
    full = client.messages.create(model=MODEL, max_tokens=1000, messages=messages).content[0].text
    words = full.split(" ")
    stop = " " + words[len(words) // 2]  # a word in the middle of the reply
    expected = full[: full.index(stop)]

    cut = client.messages.create(
        model=MODEL, max_tokens=1000, messages=messages, stop_sequences=["@@never@@", stop]
    )
    assert cut.stop_reason == "stop_sequence"
    assert cut.stop_sequence == stop
    assert cut.content[0].text == expected
    assert cut.usage.output_tokens == count_text_tokens(expected)

    with client.messages.stream(
        model=MODEL, max_tokens=1000, messages=messages, stop_sequences=[stop]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == expected
    assert final.stop_reason == "stop_sequence"
    assert final.stop_sequence == stop


@pytest.mark.parametrize("max_tokens", [1, 5, 17])
def test_max_tokens_cuts_the_reply_at_exactly_max_tokens(
    client: anthropic.Anthropic, max_tokens: int
) -> None:
    message = client.messages.create(model=MODEL, max_tokens=max_tokens, messages=HELLO)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == max_tokens
    assert count_text_tokens(message.content[0].text) == max_tokens

    with client.messages.stream(model=MODEL, max_tokens=max_tokens, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == max_tokens == count_text_tokens(text)


def test_reply_tokens_header_sets_the_reply_length(client: anthropic.Anthropic) -> None:
    for tokens in (1, 40, 333):
        message = client.messages.create(
            model=MODEL,
            max_tokens=1000,
            messages=HELLO,
            extra_headers={"x-simulator-reply-tokens": str(tokens)},
        )
        assert message.usage.output_tokens == tokens
        assert count_text_tokens(message.content[0].text) == tokens
        assert message.stop_reason == "end_turn"


# -- images -----------------------------------------------------------------------------------------------


def _input_tokens_with(client: anthropic.Anthropic, block: dict[str, Any]) -> int:
    content = [block, {"type": "text", "text": "What is in this picture?"}]
    return client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": content}]
    ).input_tokens


def test_image_tokens_grow_with_the_image_size(client: anthropic.Anthropic) -> None:
    small = _input_tokens_with(client, image_block(png(50, 40), "image/png"))
    medium = _input_tokens_with(client, image_block(png(400, 300), "image/png"))
    large = _input_tokens_with(client, image_block(jpeg_header(1000, 1000), "image/jpeg"))
    huge = _input_tokens_with(client, image_block(jpeg_header(4000, 4000), "image/jpeg"))  # downscaled first

    assert small < medium < large
    assert medium - small == pytest.approx((400 * 300 - 50 * 40) / 750, abs=2)  # tokens ≈ width*height/750
    assert large - small == pytest.approx(1334 - 3, abs=3)  # the docs: 1000x1000 ≈ 1334 tokens
    assert huge - small == pytest.approx(1533 - 3, abs=5)  # resized to fit 1.15 MP

    message = client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": [image_block(png(400, 300), "image/png")]}],
    )
    assert message.usage.input_tokens == medium - count_text_tokens("What is in this picture?")


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"type": "base64", "media_type": "image/png", "data": "not base64 at all!"}, "source.base64.data"),
        ({"type": "base64", "media_type": "image/tiff", "data": "AAAA"}, "source.base64.media_type"),
        ({"type": "base64", "media_type": "image/png", "data": "AAAAAAAA"}, "source.base64.data"),
    ],
    ids=["bad-base64", "bad-media-type", "not-an-image"],
)
def test_bad_images_are_refused_with_400_naming_the_field(
    client: anthropic.Anthropic, source: dict[str, Any], field: str
) -> None:
    content = [{"type": "text", "text": "Look"}, {"type": "image", "source": source}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": content}])
    assert f"messages.0.content.1.{field}" in caught.value.message


# -- count_tokens -----------------------------------------------------------------------------------------


def test_count_tokens_matches_the_input_tokens_charged_by_create(client: anthropic.Anthropic) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": prose(120)}],
    }
    counted = client.messages.count_tokens(**request)
    created = client.messages.create(max_tokens=50, **request)
    assert counted.input_tokens == created.usage.input_tokens

    longer = client.messages.count_tokens(
        **{**request, "messages": [{"role": "user", "content": prose(220)}]}
    )
    assert longer.input_tokens - counted.input_tokens == 100
    with_tools = client.messages.count_tokens(**request, tools=[WEATHER_TOOL])
    assert with_tools.input_tokens > counted.input_tokens + 300  # tool definitions and their hidden prompt


async def test_async_count_tokens(simulator_url: str) -> None:
    async with async_client(simulator_url) as aclient:
        counted = await aclient.messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": prose(10)}]
        )
    assert counted.input_tokens > 10


# -- models -----------------------------------------------------------------------------------------------


def test_models_list_pages_through_every_model_once(client: anthropic.Anthropic) -> None:
    everything = [model.id for model in client.models.list(limit=1000)]
    assert len(everything) > 4
    assert "claude-sonnet-4-6" in everything

    first_page = client.models.list(limit=2)
    pages = list(first_page.iter_pages())
    assert all(len(page.data) <= 2 for page in pages)
    assert [len(page.data) for page in pages[:-1]] == [2] * (len(pages) - 1)
    assert len(pages) == (len(everything) + 1) // 2
    assert not pages[-1].has_more
    assert all(page.has_more for page in pages[:-1])
    paged = [model.id for page in pages for model in page.data]
    assert paged == everything  # each id once, in the same (newest first) order
    assert [model.id for model in client.models.list(limit=2)] == everything  # auto-pagination

    third = pages[2]
    previous = client.models.list(limit=2, before_id=third.data[0].id)
    assert [m.id for m in previous.data] == [m.id for m in pages[1].data]


def test_models_retrieve_resolves_an_alias(client: anthropic.Anthropic) -> None:
    model = client.models.retrieve("claude-haiku-4-5")
    assert model.id == "claude-haiku-4-5-20251001"
    assert model.display_name == "Claude Haiku 4.5"
    assert model.type == "model"
    assert client.models.retrieve(model.id).id == model.id


async def test_async_models_list_auto_paginates(simulator_url: str, client: anthropic.Anthropic) -> None:
    expected = [model.id for model in client.models.list(limit=1000)]
    async with async_client(simulator_url) as aclient:
        ids = [model.id async for model in aclient.models.list(limit=3)]
    assert ids == expected


def test_hidden_thinking_is_billed_as_output(simulator_url: str) -> None:
    client = anthropic.Anthropic(base_url=simulator_url, api_key="test-key")
    params = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "Think about prime numbers."}],
    }
    shown = client.messages.create(**params, thinking={"type": "enabled", "budget_tokens": 1024})
    hidden = client.messages.create(
        **params, thinking={"type": "enabled", "budget_tokens": 1024, "display": "omitted"}
    )
    assert hidden.content[0].type == "thinking"
    assert hidden.content[0].thinking == ""
    # The same request with the thinking hidden costs the same output: thinking is billed, shown or not.
    assert hidden.usage.output_tokens == shown.usage.output_tokens
    assert hidden.usage.output_tokens > len(hidden.content[1].text.split())
