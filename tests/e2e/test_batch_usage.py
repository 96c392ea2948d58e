"""A Message Batch's requests are accounted once, at batch prices, to whoever created the batch."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from claudegate.accounting.prices import PriceTable, UsageTokens
from tests.e2e.conftest import Stack, make_tenant, usage_rows
from tests.e2e.flow_support import usage_records

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


def org_metric_total(metrics: str, family: str, org: str) -> float:
    """The sum of a counter's samples for one organisation, from the gateway's /metrics page."""
    return sum(
        sample.value
        for metric in text_string_to_metric_families(metrics)
        for sample in metric.samples
        if sample.name == family and sample.labels.get("org") == org
    )


async def test_batch_spending_reaches_the_metrics_as_it_reaches_the_records(stack: Stack) -> None:
    tenant = await make_tenant(stack.database_url, f"batch-metrics-{time.monotonic_ns()}")
    client = anthropic.AsyncAnthropic(base_url=stack.url, api_key=tenant.key, max_retries=0)
    hello: Any = [{"role": "user", "content": "Hello there"}]
    await client.messages.create(model=MODEL, max_tokens=30, messages=hello)
    batch = await client.messages.batches.create(
        requests=[
            {"custom_id": f"q{i}", "params": {"model": MODEL, "max_tokens": 30, "messages": hello}}
            for i in range(3)
        ]
    )
    await ended(client, batch.id)
    assert len([entry async for entry in await client.messages.batches.results(batch.id)]) == 3

    rows = await usage_records(stack.database_url, [tenant.key_id], 4)
    assert len(rows) == 4
    async with httpx2.AsyncClient(base_url=stack.url) as http:
        metrics = (await http.get("/metrics")).text
    recorded_cost = sum(float(row["cost_usd"]) for row in rows)
    recorded_output = sum(row["output_tokens"] for row in rows)
    assert org_metric_total(metrics, "claudegate_cost_usd_total", tenant.org_name) == pytest.approx(
        recorded_cost
    )
    output = [
        sample.value
        for metric in text_string_to_metric_families(metrics)
        for sample in metric.samples
        if sample.name == "claudegate_tokens_total"
        and sample.labels.get("org") == tenant.org_name
        and sample.labels.get("kind") == "output"
    ]
    assert sum(output) == recorded_output


async def test_a_deleted_batch_leaves_the_listing(stack: Stack) -> None:
    tenant = await make_tenant(stack.database_url, f"batch-delete-{time.monotonic_ns()}")
    client = anthropic.AsyncAnthropic(base_url=stack.url, api_key=tenant.key, max_retries=0)
    hello: Any = [{"role": "user", "content": "Hello"}]
    created = []
    for _ in range(2):
        batch = await client.messages.batches.create(
            requests=[{"custom_id": "q", "params": {"model": MODEL, "max_tokens": 10, "messages": hello}}]
        )
        await ended(client, batch.id)
        created.append(batch.id)
    older, newest = created

    await client.messages.batches.delete(newest)

    page = await client.messages.batches.list(limit=1)
    assert [batch.id for batch in page.data] == [older]
    assert page.first_id == older
    assert page.has_more is False
    everything = [batch.id async for batch in client.messages.batches.list()]
    assert everything == [older]
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.batches.retrieve(newest)


async def ended(client: anthropic.AsyncAnthropic, batch_id: str) -> None:
    deadline = time.monotonic() + 10
    while (await client.messages.batches.retrieve(batch_id)).processing_status != "ended":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
