"""With several upstreams, a Message Batch is reached on the upstream it was created on, even after another
upstream has become the preferred one (a settings change and a restart): retrieving it, reading its results
and listing it all go to where it lives, while new batches go to the newly preferred upstream."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import anthropic
import httpx2

from claudegate.config import Settings, UpstreamSettings
from tests.e2e.conftest import make_tenant
from tests.e2e.flow_support import client, gateway, gateway_settings, simulator

MODEL = "claude-sonnet-4-6"
REQUESTS = [
    {
        "custom_id": "q0",
        "params": {"model": MODEL, "max_tokens": 40, "messages": [{"role": "user", "content": "Hello"}]},
    }
]


def lives_on(simulator_url: str, batch_id: str) -> bool:
    reply = httpx2.get(
        f"{simulator_url}/v1/messages/batches/{batch_id}",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    return reply.status_code == 200


async def ended(sdk: anthropic.AsyncAnthropic, batch_id: str) -> None:
    give_up = time.monotonic() + 10
    while (await sdk.messages.batches.retrieve(batch_id)).processing_status != "ended":
        assert time.monotonic() < give_up
        await asyncio.sleep(0.05)


async def test_a_batch_is_reached_where_it_was_created_after_the_preferred_upstream_changes(
    flow_database_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(flow_database_url, f"batch-upstreams-{uuid.uuid4().hex[:8]}")

    def settings(preferred: str) -> Settings:
        return gateway_settings(
            None,
            flow_database_url,
            tmp_path,
            upstreams=[
                UpstreamSettings(
                    name=name, url=url, api_key="k", priority=0 if name == preferred else 1, tier="unlimited"
                )
                for name, url in (("east", east.url), ("west", west.url))
            ],
        )

    with simulator() as east, simulator() as west:
        with gateway(settings("east")) as server:
            first = await client(server.url, tenant.key).messages.batches.create(requests=REQUESTS)  # type: ignore[arg-type]
        assert lives_on(east.url, first.id)
        assert not lives_on(west.url, first.id)

        # West is preferred now: the first batch is still found, on east; a new one is made on west.
        with gateway(settings("west")) as server:
            sdk = client(server.url, tenant.key)
            await ended(sdk, first.id)
            results = [entry async for entry in await sdk.messages.batches.results(first.id)]
            assert [entry.custom_id for entry in results] == ["q0"]
            assert results[0].result.type == "succeeded"

            second = await sdk.messages.batches.create(requests=REQUESTS)  # type: ignore[arg-type]
            assert lives_on(west.url, second.id)
            assert not lives_on(east.url, second.id)

            listed = [batch.id async for batch in sdk.messages.batches.list()]
            assert listed == [second.id, first.id]
            cancelled = await sdk.messages.batches.cancel(second.id)
            assert cancelled.id == second.id
