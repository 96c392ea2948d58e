"""A call the gateway refuses takes nothing from its tenant: the tokens a key reserved for a call that the
upstream's lane (or its breaker) then turned away go back to the key, so refusals cannot use up a key that
was served nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

from claudegate.store._engine import create_engine
from claudegate.store.api_keys import KeyRepository
from claudegate.store.orgs import OrgRepository
from tests.e2e.flow_support import call, client, gateway, gateway_settings, simulator

# About 3,000 tokens of input: five calls reserve more than a 10,000-tokens-per-minute key holds.
LONG_TEXT = "Tell me about the weather in spring. " * 330


async def key_with_tokens_per_minute(database_url: str, tokens_per_minute: int) -> str:
    engine = create_engine(database_url)
    try:
        org = await OrgRepository(engine).create_org(f"refunds-{uuid.uuid4().hex[:8]}")
        key = await KeyRepository(engine).create_key(
            org_id=org.id, name="service", tokens_per_minute=tokens_per_minute
        )
    finally:
        await engine.dispose()
    return key.key


async def test_refusals_by_the_upstreams_lane_do_not_empty_a_keys_tokens_per_minute(
    flow_database_url: str, tmp_path: Path
) -> None:
    key = await key_with_tokens_per_minute(flow_database_url, 10_000)
    with simulator() as upstream:
        settings = gateway_settings(upstream.url, flow_database_url, tmp_path, upstream_tier="unlimited")
        with gateway(settings) as server:
            sdk = client(server.url, key)
            # The upstream asks for 3 s of rest: the gateway relays its 429 (a 2 s deadline cannot wait)
            # and holds its lane for that long.
            paused = await call(sdk, fault="rate_limit:3", text=LONG_TEXT, deadline_ms=2_000)
            assert (paused.status, paused.from_gateway) == (429, False), paused

            # Calls that cannot wait that long are refused by the gateway at once, by the lane.
            refusals = [await call(sdk, text=LONG_TEXT, deadline_ms=2_000) for _ in range(5)]
            assert [(r.status, r.from_gateway) for r in refusals] == [(429, True)] * 5, refusals
            assert all("upstream" in r.message for r in refusals), [r.message for r in refusals]

            # A call that can wait for the lane is served: the key still has its 10,000 tokens a minute.
            served = await call(sdk, text=LONG_TEXT, deadline_ms=15_000)
            assert served.ok, served
