"""The official ``openai`` Python SDK as a client of the gateway's Chat Completions door: replies, streams,
tool calls, images, structured output, errors raised as the SDK's own classes, cached tokens and usage
records."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anthropic
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from claudegate.store import Store
from tests.e2e.conftest import SLOW_REPLY_TOKENS, Stack, Tenant, make_tenant
from tests.e2e.flow_support import usage_records

MODEL = "claude-sonnet-4-6"
# A 1×1 PNG.
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
async def tenant(stack: Stack) -> Tenant:
    return await make_tenant(stack.database_url, f"openai-{uuid.uuid4().hex[:8]}")


def client(stack: Stack, key: str, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=f"{stack.url}/v1", api_key=key, **options)


async def test_a_completion_is_answered_and_recorded_as_an_openai_call(stack: Stack, tenant: Tenant) -> None:
    sdk = client(stack, tenant.key)
    completion = await sdk.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are brief."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Say hello."},
        ],
        max_completion_tokens=200,
        user="end-user-42",
    )

    choice = completion.choices[0]
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 200
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    [record] = await usage_records(stack.database_url, [tenant.key_id], 1)
    assert record["api"] == "openai"
    assert record["status"] == 200
    assert record["model"] == MODEL
    assert record["input_tokens"] == completion.usage.prompt_tokens
    assert record["output_tokens"] == completion.usage.completion_tokens


async def test_a_short_max_tokens_ends_with_finish_reason_length(stack: Stack, tenant: Tenant) -> None:
    completion = await client(stack, tenant.key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell me a long story."}], max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


async def test_a_text_stream_arrives_in_chunks_with_usage_at_the_end(stack: Stack, tenant: Tenant) -> None:
    stream = await client(stack, tenant.key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a story."}],
        max_tokens=300,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert len(text.split()) > 3
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finishes[-1] == "stop"
    assert all(reason is None for reason in finishes[:-1])
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens > 0

    [record] = await usage_records(stack.database_url, [tenant.key_id], 1)
    assert record["api"] == "openai"
    assert record["streamed"] is True
    assert record["output_tokens"] == usage_chunk.usage.completion_tokens


async def test_a_streamed_tool_call_arrives_as_argument_deltas(stack: Stack, tenant: Tenant) -> None:
    stream = await client(stack, tenant.key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
        tools=[WEATHER],
        tool_choice="required",
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    deltas = 0
    finish = None
    async for chunk in stream:
        assert chunk.usage is None  # not asked for
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            if call.id:
                entry["id"] = call.id
            if call.function and call.function.name:
                entry["name"] = call.function.name
            if call.function and call.function.arguments:
                entry["arguments"] += call.function.arguments
                deltas += 1

    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"].startswith("toolu_")
    assert isinstance(json.loads(calls[0]["arguments"])["city"], str)
    assert deltas > 1  # the arguments came in pieces, as they were produced


async def test_a_tool_round_trip(stack: Stack, tenant: Tenant) -> None:
    sdk = client(stack, tenant.key)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = await sdk.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)

    messages.append(first.choices[0].message.model_dump(exclude_none=True))  # type: ignore[arg-type]
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 °C"})
    second = await sdk.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content
    assert not second.choices[0].message.tool_calls


async def test_images_as_data_urls_and_web_urls(stack: Stack, tenant: Tenant) -> None:
    sdk = client(stack, tenant.key)

    async def prompt_tokens(image_url: str) -> int:
        completion = await sdk.chat.completions.create(
            model=MODEL,
            max_tokens=50,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": image_url}},
                    ],
                }
            ],
        )
        assert completion.choices[0].message.content
        assert completion.usage is not None
        return completion.usage.prompt_tokens

    text_only = await sdk.chat.completions.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "What is in this picture?"}]
    )
    assert text_only.usage is not None
    pixel = await prompt_tokens(PIXEL)
    # The simulator does not fetch a URL image; it charges it as a full-size image (about 1,600 tokens).
    web = await prompt_tokens("https://example.com/cat.png")
    assert text_only.usage.prompt_tokens < pixel < text_only.usage.prompt_tokens + 10
    assert web > text_only.usage.prompt_tokens + 1000


async def test_a_json_schema_reply_follows_the_schema(stack: Stack, tenant: Tenant) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    completion = await client(stack, tenant.key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "The largest city of Norway?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema, "strict": True},
        },
    )
    content = completion.choices[0].message.content
    assert content is not None
    jsonschema.validate(json.loads(content), schema)


async def test_the_second_call_of_a_long_conversation_reads_the_cache(stack: Stack, tenant: Tenant) -> None:
    sdk = client(stack, tenant.key)
    rules = " ".join(f"Rule {n}: answer politely and cite the handbook section {n}." for n in range(400))
    messages: list[ChatCompletionMessageParam] = [
        # A prompt of this run's own: the simulator's cache outlives a test.
        {"role": "system", "content": f"You are support desk {uuid.uuid4().hex}. {rules}"},
        {"role": "user", "content": "My order has not arrived."},
    ]
    first = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=100)
    messages.append({"role": "assistant", "content": first.choices[0].message.content})
    messages.append({"role": "user", "content": "It was order 1234."})
    second = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=100)

    assert first.usage is not None
    assert second.usage is not None
    assert first.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None
    assert second.usage.prompt_tokens > cached

    # The second call read from the cache everything the first wrote to it: the system prompt and the
    # first question (almost all of the first call's prompt).
    records = await usage_records(stack.database_url, [tenant.key_id], 2)
    assert [r["cache_read_input_tokens"] for r in records] == [0, cached]
    assert records[0]["cache_creation_input_tokens"] == cached
    assert cached > 0.99 * first.usage.prompt_tokens


async def test_models_are_listed_in_openai_shape_and_in_anthropic_shape(stack: Stack, tenant: Tenant) -> None:
    sdk = client(stack, tenant.key)
    listed = [model async for model in sdk.models.list()]
    assert MODEL in {model.id for model in listed}
    assert all(model.object == "model" and model.owned_by == "anthropic" for model in listed)
    one = await sdk.models.retrieve("claude-haiku-4-5")
    assert one.id == "claude-haiku-4-5-20251001"

    native = anthropic.AsyncAnthropic(base_url=stack.url, api_key=tenant.key, max_retries=0)
    page = await native.models.list()
    assert MODEL in {model.id for model in page.data}
    assert all(model.type == "model" for model in page.data)


async def test_a_bad_key_raises_authentication_error(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        await client(stack, "cg-not-a-key").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}]
        )
    assert raised.value.code == "invalid_api_key"
    assert raised.value.response.headers["x-claudegate-origin"] == "gateway"


async def test_what_cannot_be_translated_raises_bad_request_naming_it(stack: Stack, tenant: Tenant) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client(stack, tenant.key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], n=2
        )
    assert raised.value.param == "n"
    assert "n = 1" in raised.value.message
    [record] = await usage_records(stack.database_url, [tenant.key_id], 1)
    assert record["status"] == 400
    assert record["api"] == "openai"


async def test_an_unknown_model_raises_not_found(stack: Stack, tenant: Tenant) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await client(stack, tenant.key).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
        )
    assert raised.value.code == "model_not_found"
    assert "gpt-4o" in raised.value.message


async def test_an_upstream_rate_limit_raises_rate_limit_error_with_retry_after(
    stack: Stack, tenant: Tenant
) -> None:
    with pytest.raises(openai.RateLimitError) as raised:
        await client(stack, tenant.key).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-simulator-fault": "rate_limit"},
        )
    assert raised.value.code == "rate_limit_exceeded"
    assert int(raised.value.response.headers["retry-after"]) >= 1


async def test_a_spent_budget_raises_rate_limit_error_that_is_not_retried(
    stack: Stack, tenant: Tenant
) -> None:
    store = await Store.open(stack.database_url, upgrade=False)
    try:
        await store.budgets.update(org_id=tenant.org_id, changes={"daily_tokens": 10})
    finally:
        await store.close()
    sdk = client(stack, tenant.key, max_retries=2)  # the SDK would retry a plain 429 twice

    with pytest.raises(openai.RateLimitError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])

    assert raised.value.code == "insufficient_quota"
    assert raised.value.type == "insufficient_quota"
    assert "budget" in raised.value.message
    assert raised.value.response.headers["x-should-retry"] == "false"
    # The SDK raised the answer to its first attempt: it did not retry.
    assert raised.value.response.request.headers["x-stainless-retry-count"] == "0"
    [record] = await usage_records(stack.database_url, [tenant.key_id], 1)
    assert (record["status"], record["error_type"], record["api"]) == (402, "billing_error", "openai")


async def test_a_stream_that_fails_midway_raises_api_error(stack: Stack, tenant: Tenant) -> None:
    stream = await client(stack, tenant.key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a story."}],
        stream=True,
        extra_headers={"x-simulator-fault": "midstream_error:overloaded_error"},
    )
    with pytest.raises(openai.APIError) as raised:
        async for _ in stream:
            pass
    assert raised.value.type == "server_error"
    assert raised.value.code == "overloaded"


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "claude-haiku-4-5"])
async def test_reasoning_effort_returns_the_thinking_as_reasoning_content(
    stack: Stack, tenant: Tenant, model: str
) -> None:
    sdk = client(stack, tenant.key)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Why is the sky blue?"}]
    completion = await sdk.chat.completions.create(model=model, messages=messages, reasoning_effort="low")
    extra = completion.choices[0].message.model_extra or {}
    assert len(extra["reasoning_content"].split()) > 5
    assert completion.choices[0].message.content

    stream = await sdk.chat.completions.create(
        model=model, messages=messages, reasoning_effort="low", stream=True
    )
    reasoning = ""
    async for chunk in stream:
        if chunk.choices:
            reasoning += (chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
    assert reasoning == extra["reasoning_content"]  # the simulator thinks alike for alike requests


async def test_a_client_that_leaves_mid_stream_leaves_a_record_of_what_it_was_sent(
    stack: Stack, slow_gateway_url: str, tenant: Tenant
) -> None:
    sdk = openai.AsyncOpenAI(base_url=f"{slow_gateway_url}/v1", api_key=tenant.key, max_retries=0)
    stream = await sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a long story."}],
        max_tokens=400,
        stream=True,
        extra_headers={"x-simulator-reply-tokens": str(SLOW_REPLY_TOKENS)},  # a second's work upstream
    )
    received = 0
    async for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 5:
            break
    await stream.close()

    [record] = await usage_records(stack.database_url, [tenant.key_id], 1)
    assert (record["status"], record["error_type"], record["api"]) == (499, "client_disconnected", "openai")
    assert 5 <= record["output_tokens"] < SLOW_REPLY_TOKENS
