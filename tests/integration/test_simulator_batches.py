"""Message Batches through the SDK: create, poll, results by custom_id, list, cancel, delete."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.integration.simulator_support import (
    HELLO,
    MODEL,
    async_client,
    simulator,
    sync_client,
    unique_key,
    wait_until_ended,
)

REQUESTS: list[dict[str, Any]] = [
    {"custom_id": "first", "params": {"model": MODEL, "max_tokens": 100, "messages": HELLO}},
    {
        "custom_id": "second",
        "params": {"model": MODEL, "max_tokens": 7, "messages": [{"role": "user", "content": "Hi"}]},
    },
    {"custom_id": "broken", "params": {"model": MODEL, "max_tokens": -5, "messages": HELLO}},
    {"custom_id": "no-model", "params": {"model": "claude-nope", "max_tokens": 5, "messages": HELLO}},
]


@pytest.fixture
def client(simulator_url: str) -> Iterator[anthropic.Anthropic]:
    with sync_client(simulator_url, api_key=unique_key()) as sdk:
        yield sdk


def test_batch_round_trip(simulator_url: str, client: anthropic.Anthropic) -> None:
    created = client.messages.batches.create(requests=REQUESTS)
    assert created.id.startswith("msgbatch_")
    assert created.type == "message_batch"
    assert created.processing_status == "in_progress"
    assert created.results_url is None
    assert created.request_counts.processing == len(REQUESTS)

    ended = wait_until_ended(client, created.id)
    assert ended.ended_at is not None
    assert ended.results_url is not None
    counts = ended.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired) == (
        0,
        2,
        2,
        0,
        0,
    )
    assert ended.expires_at > ended.created_at

    results = {item.custom_id: item.result for item in client.messages.batches.results(created.id)}
    assert set(results) == {r["custom_id"] for r in REQUESTS}

    first, second = results["first"], results["second"]
    assert first.type == "succeeded"
    assert second.type == "succeeded"
    assert first.message.usage.service_tier == "batch"
    assert second.message.stop_reason == "max_tokens"
    assert second.message.usage.output_tokens == 7
    with sync_client(simulator_url) as direct:  # a batch request is answered as /v1/messages would answer it
        alone = direct.messages.create(**REQUESTS[0]["params"])
    assert first.message.content == alone.content

    broken = results["broken"]
    assert broken.type == "errored"
    assert broken.error.type == "error"
    assert broken.error.error.type == "invalid_request_error"
    assert "max_tokens" in broken.error.error.message
    no_model = results["no-model"]
    assert no_model.type == "errored"
    assert no_model.error.error.type == "not_found_error"

    listed = [batch.id for batch in client.messages.batches.list(limit=10)]
    assert created.id in listed

    assert client.messages.batches.cancel(created.id).processing_status == "ended"  # too late to cancel
    deleted = client.messages.batches.delete(created.id)
    assert deleted.id == created.id
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(created.id)


def test_batches_are_private_and_listed_newest_first(simulator_url: str, client: anthropic.Anthropic) -> None:
    ids = [client.messages.batches.create(requests=REQUESTS[:1]).id for _ in range(3)]
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids[::-1]  # auto-pagination
    with sync_client(simulator_url, api_key=unique_key()) as stranger:
        assert list(stranger.messages.batches.list()) == []
        with pytest.raises(anthropic.NotFoundError):
            stranger.messages.batches.retrieve(ids[0])


def test_a_canceled_batch_ends_with_canceled_results() -> None:
    with simulator(batch_seconds_per_request=0.02) as url, sync_client(url) as client:
        many = [{"custom_id": f"r{i}", "params": REQUESTS[0]["params"]} for i in range(50)]
        batch = client.messages.batches.create(requests=many)
        with pytest.raises(anthropic.BadRequestError, match="still processing"):
            client.messages.batches.delete(batch.id)

        canceling = client.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling"
        assert canceling.cancel_initiated_at is not None

        ended = wait_until_ended(client, batch.id)
        assert ended.request_counts.canceled > 0
        assert ended.request_counts.succeeded + ended.request_counts.canceled == len(many)
        kinds = {item.result.type for item in client.messages.batches.results(batch.id)}
        assert "canceled" in kinds
        client.messages.batches.delete(batch.id)


def test_bad_batches_are_refused(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="requests: List should have at least 1 item"):
        client.messages.batches.create(requests=[])
    duplicate = [REQUESTS[0], {**REQUESTS[1], "custom_id": "first"}]
    with pytest.raises(anthropic.BadRequestError, match=r"requests\.1\.custom_id: Duplicate"):
        client.messages.batches.create(requests=duplicate)


async def test_async_batch_round_trip(simulator_url: str) -> None:
    async with async_client(simulator_url, api_key=unique_key()) as aclient:
        batch = await aclient.messages.batches.create(requests=REQUESTS[:2])
        for _ in range(500):
            batch = await aclient.messages.batches.retrieve(batch.id)
            if batch.processing_status == "ended":
                break
            await asyncio.sleep(0.02)
        assert batch.processing_status == "ended"
        results = {
            item.custom_id: item.result.type
            async for item in await aclient.messages.batches.results(batch.id)
        }
    assert results == {"first": "succeeded", "second": "succeeded"}
