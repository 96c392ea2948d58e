"""A Message Batch's requests are accounted once, at batch prices, to whoever created the batch."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import anthropic

from claudegate.accounting.prices import PriceTable, UsageTokens
from tests.e2e.conftest import Stack, make_tenant, usage_rows

MODEL = "claude-sonnet-4-6"


async def test_batch_results_are_recorded_once_at_batch_prices(stack: Stack) -> None:
    tenant = await make_tenant(stack.database_url, f"batcher-{time.monotonic_ns()}")
    client = anthropic.AsyncAnthropic(base_url=stack.url, api_key=tenant.user_key, max_retries=0)
    requests = [
        {
            "custom_id": f"q{i}",
            "params": {
                "model": MODEL,
                "max_tokens": 40,
                "messages": [{"role": "user", "content": f"Question number {i}"}],
            },
        }
        for i in range(3)
    ]
    requests.append({"custom_id": "bad", "params": {"model": MODEL, "max_tokens": 40, "messages": []}})
    batch = await client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while (await client.messages.batches.retrieve(batch.id)).processing_status != "ended":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    results = {
        entry.custom_id: entry.result async for entry in await client.messages.batches.results(batch.id)
    }
    # Reading the results again (another client, say) must not count them twice.
    again = [entry async for entry in await client.messages.batches.results(batch.id)]
    assert len(again) == len(results) == 4
    await asyncio.sleep(0.3)  # the usage writer flushes every 0.05 s in these tests

    rows = {row["request_id"]: row for row in await usage_rows(stack.database_url, [tenant.user_key_id])}
    assert set(rows) == {f"{batch.id}:q0", f"{batch.id}:q1", f"{batch.id}:q2", f"{batch.id}:bad"}
    prices = PriceTable.load()
    for custom_id in ("q0", "q1", "q2"):
        row = rows[f"{batch.id}:{custom_id}"]
        message = results[custom_id].message  # type: ignore[union-attr]
        assert row["batch"] is True
        assert row["status"] == 200
        assert row["user_id"] == tenant.user_id
        assert (row["input_tokens"], row["output_tokens"]) == (
            message.usage.input_tokens,
            message.usage.output_tokens,
        )
        full = prices.cost(
            message.model,
            UsageTokens(input_tokens=row["input_tokens"], output_tokens=row["output_tokens"]),
            batch=False,
        )
        assert full is not None
        assert Decimal(str(row["cost_usd"])) == (full / 2).quantize(Decimal("1e-10"))  # half price
    bad = rows[f"{batch.id}:bad"]
    assert (bad["status"], bad["error_type"], bad["cost_usd"]) == (400, "invalid_request_error", None)
