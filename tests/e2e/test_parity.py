"""A client cannot tell the gateway from Anthropic: the official SDK, sent the same requests to the gateway
(with a gateway key) and to the simulator directly, gets the same replies, ids and timings aside."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import MessageParam

from claudegate.wire.sse import SSEParser
from tests.e2e.conftest import Stack, make_tenant, strip_ids

MODEL = "claude-sonnet-4-6"
HELLO: list[MessageParam] = [{"role": "user", "content": "Hello, who are you?"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City and country"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}


def pair(stack: Stack) -> tuple[anthropic.Anthropic, anthropic.Anthropic]:
    """A client of the gateway and one of the simulator itself (which takes any key)."""
    return (
        anthropic.Anthropic(base_url=stack.url, api_key=stack.org_a.key, max_retries=0),
        anthropic.Anthropic(base_url=stack.simulator_url, api_key=f"sk-{uuid.uuid4().hex}", max_retries=0),
    )


def async_pair(
    stack: Stack, key: str | None = None
) -> tuple[anthropic.AsyncAnthropic, anthropic.AsyncAnthropic]:
    return (
        anthropic.AsyncAnthropic(base_url=stack.url, api_key=key or stack.org_a.key, max_retries=0),
        anthropic.AsyncAnthropic(
            base_url=stack.simulator_url, api_key=f"sk-{uuid.uuid4().hex}", max_retries=0
        ),
    )


def reply(message: Any) -> dict[str, Any]:
    data: dict[str, Any] = strip_ids(message.model_dump(mode="json"))
    return data


# -- Messages ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"max_tokens": 200, "messages": HELLO}, id="plain"),
        pytest.param(
            {
                "max_tokens": 200,
                "messages": HELLO,
                "system": "Answer in one line.",
                "metadata": {"user_id": "u-42"},
            },
            id="system",
        ),
        pytest.param({"max_tokens": 5, "messages": HELLO}, id="max_tokens"),
        pytest.param(
            {
                "max_tokens": 2000,
                "messages": HELLO,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
            },
            id="thinking",
        ),
    ],
)
def test_sync_replies_match(stack: Stack, params: dict[str, Any]) -> None:
    gateway, direct = pair(stack)
    through = gateway.messages.create(model=MODEL, **params)
    straight = direct.messages.create(model=MODEL, **params)
    assert reply(through) == reply(straight)
    assert through.id.startswith("msg_")
    assert through.id != straight.id
    assert through.usage.input_tokens > 0
    assert through.usage.output_tokens > 0


async def test_async_replies_and_streams_match(stack: Stack) -> None:
    gateway, direct = async_pair(stack)
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 300, "messages": HELLO}
    through, straight = await asyncio.gather(
        gateway.messages.create(**params), direct.messages.create(**params)
    )
    assert reply(through) == reply(straight)

    async def streamed(client: anthropic.AsyncAnthropic) -> tuple[str, Any]:
        async with client.messages.stream(**params) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            return text, await stream.get_final_message()

    (text_g, final_g), (text_d, final_d) = await asyncio.gather(streamed(gateway), streamed(direct))
    assert text_g == text_d == through.content[0].text
    assert reply(final_g) == reply(final_d)
    # Streaming and not streaming the same request give the same message.
    assert reply(final_g)["content"] == reply(through)["content"]
    assert final_g.usage.output_tokens == through.usage.output_tokens


# -- Streams, event for event -----------------------------------------------------------------------------


def raw_events(url: str, key: str, body: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """The SSE events of a streamed reply as (event name, data without message ids), pings included."""
    parser = SSEParser()
    events: list[tuple[str | None, Any]] = []
    with httpx2.stream(
        "POST",
        f"{url}/v1/messages",
        json={**body, "stream": True},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_bytes():
            events.extend((e.event, strip_ids(e.json())) for e in parser.feed(chunk))
    assert parser.pending == b""
    return events


def sdk_events(client: anthropic.Anthropic, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.messages.create(**body, stream=True) as stream:
        return [strip_ids(event.model_dump(mode="json")) for event in stream]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"model": MODEL, "max_tokens": 400, "messages": HELLO}, id="text"),
        pytest.param(
            {
                "model": MODEL,
                "max_tokens": 400,
                "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "any"},
            },
            id="tool_use",
        ),
        pytest.param(
            {"model": MODEL, "max_tokens": 400, "messages": HELLO, "stop_sequences": ["the"]},
            id="stop_sequence",
        ),
    ],
)
def test_streams_match_event_for_event(stack: Stack, body: dict[str, Any]) -> None:
    through = raw_events(stack.url, stack.org_a.key, body)
    straight = raw_events(stack.simulator_url, "sk-direct", body)
    assert through == straight
    names = [name for name, _ in through]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert "content_block_delta" in names

    gateway, direct = pair(stack)
    assert sdk_events(gateway, body) == sdk_events(direct, body)


def test_tool_use_matches(stack: Stack) -> None:
    gateway, direct = pair(stack)
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "any"},
    }
    through = gateway.messages.create(**params)
    assert reply(through) == reply(direct.messages.create(**params))
    assert through.stop_reason == "tool_use"
    call = next(block for block in through.content if block.type == "tool_use")
    assert call.name == "get_weather"
    assert "location" in call.input

    # The tool round trip: the tool's result goes back, and both answer it alike.
    follow_up = {
        **params,
        "tool_choice": {"type": "auto"},
        "messages": [
            *params["messages"],
            {"role": "assistant", "content": [block.model_dump() for block in through.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 °C, sunny"}],
            },
        ],
    }
    assert reply(gateway.messages.create(**follow_up)) == reply(direct.messages.create(**follow_up))


def test_count_tokens_matches(stack: Stack) -> None:
    gateway, direct = pair(stack)
    params: dict[str, Any] = {
        "model": MODEL,
        "messages": HELLO,
        "system": "Be brief.",
        "tools": [WEATHER_TOOL],
    }
    through = gateway.messages.count_tokens(**params)
    assert through.input_tokens == direct.messages.count_tokens(**params).input_tokens > 0


def test_models_match(stack: Stack) -> None:
    gateway, direct = pair(stack)
    listed = [m.model_dump(mode="json") for m in gateway.models.list()]
    assert listed == [m.model_dump(mode="json") for m in direct.models.list()]
    assert len(listed) > 3
    # Pages too: the SDK follows the cursor through the gateway.
    paged = [m.id for m in gateway.models.list(limit=2)]
    assert paged == [m["id"] for m in listed]
    model_id = listed[0]["id"]
    assert gateway.models.retrieve(model_id) == direct.models.retrieve(model_id)
    alias = gateway.models.retrieve(MODEL)
    assert alias == direct.models.retrieve(MODEL)


# -- Message Batches --------------------------------------------------------------------------------------


def batch_requests(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{tag}-{i}",
            "params": {
                "model": MODEL,
                "max_tokens": 100,
                "messages": [{"role": "user", "content": f"Question number {i} of {tag}"}],
            },
        }
        for i in range(n)
    ]


async def wait_ended(client: anthropic.AsyncAnthropic, batch_id: str, deadline_s: float = 15) -> Any:
    deadline = time.monotonic() + deadline_s
    while True:
        batch = await client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} did not end"
        await asyncio.sleep(0.05)


def batch_shape(batch: Any) -> dict[str, Any]:
    data: dict[str, Any] = batch.model_dump(mode="json")
    for moment in ("id", "created_at", "expires_at", "ended_at", "cancel_initiated_at", "results_url"):
        data[moment] = data[moment] is not None  # present or not; the values differ between runs
    return data


async def test_batches_match(stack: Stack) -> None:
    tenant = await make_tenant(stack.database_url, f"batches-{uuid.uuid4().hex[:8]}")
    gateway, direct = async_pair(stack, tenant.key)
    requests = batch_requests(3, "parity")
    created_g, created_d = await asyncio.gather(
        gateway.messages.batches.create(requests=requests),  # type: ignore[arg-type]
        direct.messages.batches.create(requests=requests),  # type: ignore[arg-type]
    )
    assert batch_shape(created_g) == batch_shape(created_d)
    assert created_g.processing_status == "in_progress"

    ended_g, ended_d = await asyncio.gather(
        wait_ended(gateway, created_g.id), wait_ended(direct, created_d.id)
    )
    assert batch_shape(ended_g) == batch_shape(ended_d)
    assert ended_g.request_counts.succeeded == 3
    # Results are fetched from the gateway, behind its keys, never from the upstream.
    assert ended_g.results_url == f"{stack.url}/v1/messages/batches/{created_g.id}/results"

    async def results(client: anthropic.AsyncAnthropic, batch_id: str) -> dict[str, Any]:
        return {
            r.custom_id: strip_ids(r.result.model_dump(mode="json"))
            async for r in await client.messages.batches.results(batch_id)
        }

    results_g, results_d = await asyncio.gather(results(gateway, created_g.id), results(direct, created_d.id))
    assert results_g == results_d
    assert sorted(results_g) == ["parity-0", "parity-1", "parity-2"]
    assert all(result["type"] == "succeeded" for result in results_g.values())

    # A second batch, cancelled at once: both report it canceling, then ended with canceled requests.
    many = batch_requests(200, "cancel")
    second_g = await gateway.messages.batches.create(requests=many)  # type: ignore[arg-type]
    second_d = await direct.messages.batches.create(requests=many)  # type: ignore[arg-type]
    canceling_g, canceling_d = await asyncio.gather(
        gateway.messages.batches.cancel(second_g.id), direct.messages.batches.cancel(second_d.id)
    )
    assert canceling_g.processing_status == canceling_d.processing_status == "canceling"
    assert canceling_g.cancel_initiated_at is not None
    ended_g, ended_d = await asyncio.gather(wait_ended(gateway, second_g.id), wait_ended(direct, second_d.id))
    assert ended_g.request_counts.canceled > 0
    assert ended_d.request_counts.canceled > 0

    # Lists: newest first, paged by the SDK; the gateway lists the organisation's batches.
    listed_g = [b.id async for b in gateway.messages.batches.list(limit=1)]
    listed_d = [b.id async for b in direct.messages.batches.list(limit=1)]
    assert listed_g == [second_g.id, created_g.id]
    assert listed_d == [second_d.id, created_d.id]
    page_g = await gateway.messages.batches.list(limit=1)
    page_d = await direct.messages.batches.list(limit=1)
    assert (page_g.has_more, len(page_g.data)) == (page_d.has_more, len(page_d.data)) == (True, 1)

    # Delete: the same answer, and then the batch is gone from both.
    deleted_g, deleted_d = await asyncio.gather(
        gateway.messages.batches.delete(created_g.id), direct.messages.batches.delete(created_d.id)
    )
    assert (deleted_g.id, deleted_g.type) == (created_g.id, "message_batch_deleted")
    assert deleted_d.type == deleted_g.type
    for client, batch_id in ((gateway, created_g.id), (direct, created_d.id)):
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.batches.retrieve(batch_id)
    assert [b.id async for b in gateway.messages.batches.list()] == [second_g.id]


def test_batch_errors_match(stack: Stack) -> None:
    """Deleting a batch still in progress, and a batch with a streaming request, fail alike."""
    gateway, direct = pair(stack)
    streaming = batch_requests(1, "bad")
    streaming[0]["params"]["stream"] = True
    errors = []
    for client in (gateway, direct):
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.batches.create(requests=streaming)  # type: ignore[arg-type]
        errors.append(caught.value.body)
    assert errors[0]["error"] == errors[1]["error"]  # type: ignore[index]

    running = []
    for client in (gateway, direct):
        batch = client.messages.batches.create(requests=batch_requests(300, "busy"))  # type: ignore[arg-type]
        running.append(batch.id)
        with pytest.raises(anthropic.BadRequestError):
            client.messages.batches.delete(batch.id)
        client.messages.batches.cancel(batch.id)
