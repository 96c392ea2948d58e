"""Through the gateway, with the official SDK and strict response validation: every model the SDK lists
answers a message and a stream, the models API passes through with its lifecycle filter, and what usage
reports beyond tokens (fast mode, region) is costed and kept on the usage record."""

from __future__ import annotations

import asyncio
import time
import warnings
from decimal import Decimal
from typing import Any

import anthropic
import pytest

from claudegate.accounting.prices import PriceTable
from claudegate.wire.models import default_catalog
from claudegate.wire.usage_tap import Usage
from tests.e2e.conftest import Stack, make_tenant, usage_rows
from tests.sdk_models import sdk_model_ids


def strict_client(stack: Stack, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=stack.url, api_key=key, max_retries=0, _strict_response_validation=True
    )


async def records_for(database_url: str, key_id: int, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15  # the usage writer flushes every 50 ms in these tests
    while True:
        rows = await usage_rows(database_url, [key_id])
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("model", sdk_model_ids())
async def test_every_sdk_model_answers_through_the_gateway(stack: Stack, model: str) -> None:
    async with strict_client(stack, stack.org_a.key) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the SDK warns about deprecated models
            message = await client.messages.create(
                model=model, max_tokens=16, messages=[{"role": "user", "content": "Hello"}]
            )
            async with client.messages.stream(
                model=model, max_tokens=16, messages=[{"role": "user", "content": "Hello"}]
            ) as stream:
                final = await stream.get_final_message()
    info = default_catalog().resolve(model)
    assert info is not None
    assert message.model == final.model == info.id
    assert message.content
    assert final.usage.output_tokens > 0


async def test_the_models_api_passes_through_with_its_lifecycle_filter(stack: Stack) -> None:
    async with strict_client(stack, stack.org_a.key) as client:
        listed = [model async for model in client.models.list()]
        retired = [model async for model in client.models.list(lifecycle=["retired"])]
        one = await client.models.retrieve("claude-sonnet-4-5")
    assert {model.id for model in listed} >= {"claude-fable-5-2", "claude-opus-4-5-20251101"}
    assert {model.lifecycle for model in listed} == {"active", "deprecated"}
    assert {model.lifecycle for model in retired} == {"retired"}
    assert (one.id, one.lifecycle) == ("claude-sonnet-4-5-20250929", "retired")


async def test_fast_mode_and_data_residency_are_costed_and_kept(stack: Stack, database_url: str) -> None:
    tenant = await make_tenant(database_url, "fastco")
    async with strict_client(stack, tenant.key) as client:
        fast = await client.messages.create(
            model="claude-opus-4-6",
            max_tokens=20,
            messages=[{"role": "user", "content": "Refactor this module"}],
            speed="fast",
            inference_geo="us",
            extra_headers={"anthropic-beta": "fast-mode-2026-02-01"},
        )
        async with client.messages.stream(
            model="claude-opus-4-6",
            max_tokens=20,
            messages=[{"role": "user", "content": "Refactor this module"}],
        ) as stream:
            standard = await stream.get_final_message()
    assert (fast.usage.speed, fast.usage.inference_geo) == ("fast", "us")
    rows = await records_for(database_url, tenant.key_id, 2)
    by_details = {(row["usage_details"] or {}).get("speed") == "fast": row for row in rows}
    fast_row, standard_row = by_details[True], by_details[False]
    assert fast_row["usage_details"]["speed"] == "fast"
    assert fast_row["usage_details"]["inference_geo"] == "us"
    assert fast_row["usage_details"]["service_tier"] == "standard"  # a field priced by no rule, kept as well
    # Opus 4.6: $5 in and $25 out per million, 6x for fast mode, 1.1x in the US region.
    base = (Decimal(fast.usage.input_tokens) * 5 + Decimal(fast.usage.output_tokens) * 25) / 1_000_000
    assert fast_row["cost_usd"] == pytest.approx(base * 6 * Decimal("1.1"))
    plain = (
        Decimal(standard.usage.input_tokens) * 5 + Decimal(standard.usage.output_tokens) * 25
    ) / 1_000_000
    assert standard_row["cost_usd"] == pytest.approx(plain)
    # The gateway's figure is the price table's for the usage the client saw.
    seen = Usage(
        input_tokens=fast.usage.input_tokens,
        output_tokens=fast.usage.output_tokens,
        speed="fast",
        inference_geo="us",
    )
    assert fast_row["cost_usd"] == pytest.approx(PriceTable.load().cost("claude-opus-4-6", seen, batch=False))
