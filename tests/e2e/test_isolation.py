"""Organisations share one upstream account, yet one never sees another's message batches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
import httpx2
import pytest

from tests.e2e.conftest import Stack

MODEL = "claude-sonnet-4-6"


def test_a_batch_is_invisible_to_other_organisations(stack: Stack) -> None:
    owner = anthropic.Anthropic(base_url=stack.url, api_key=stack.org_a.key, max_retries=0)
    colleague = anthropic.Anthropic(base_url=stack.url, api_key=stack.org_a.user_key, max_retries=0)
    requests = [
        {
            "custom_id": f"q{i}",
            "params": {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": f"Q{i}"}]},
        }
        for i in range(2)
    ]
    batch = owner.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while owner.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    for key in (stack.org_b.key, stack.org_b.user_key):
        other = anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0)
        with pytest.raises(anthropic.NotFoundError):
            other.messages.batches.retrieve(batch.id)
        with pytest.raises(anthropic.NotFoundError):
            other.messages.batches.results(batch.id)
        with pytest.raises(anthropic.NotFoundError):
            other.messages.batches.cancel(batch.id)
        with pytest.raises(anthropic.NotFoundError):
            other.messages.batches.delete(batch.id)
        # Following the results URL by hand does not help either.
        results = httpx2.get(
            f"{stack.url}/v1/messages/batches/{batch.id}/results",
            headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        )
        assert results.status_code == 404
        assert results.json()["error"]["type"] == "not_found_error"
        assert batch.id not in [b.id for b in other.messages.batches.list()]

    # The owner's organisation still has it, untouched: anyone in it may read it.
    kept = colleague.messages.batches.retrieve(batch.id)
    assert kept.processing_status == "ended"
    assert kept.cancel_initiated_at is None
    assert kept.request_counts.succeeded == 2
    assert sorted(r.custom_id for r in colleague.messages.batches.results(batch.id)) == ["q0", "q1"]
    assert batch.id in [b.id for b in colleague.messages.batches.list()]


async def test_a_new_batch_can_be_read_at_once(stack: Stack) -> None:
    """Ownership is recorded before the creator learns the batch id, so reading it right away never 404s."""
    client = anthropic.AsyncAnthropic(base_url=stack.url, api_key=stack.org_a.key, max_retries=0)
    requests: Any = [
        {
            "custom_id": "only",
            "params": {"model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]},
        }
    ]

    async def create_then_read() -> str:
        batch = await client.messages.batches.create(requests=requests)
        return (await client.messages.batches.retrieve(batch.id)).id

    ids = await asyncio.gather(*(create_then_read() for _ in range(20)))
    assert len(set(ids)) == 20
