"""Fairness, as a latecomer sees it: while one organisation's large burst saturates a lane, another
organisation that arrives later with a few calls takes turns with it instead of queueing behind the whole
burst, so its calls are answered long before the burst's last."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from anthropic import AsyncAnthropic

from tests.e2e.conftest import make_tenant
from tests.e2e.flow_support import Outcome, call, client, gateway, gateway_settings

SLOTS = 4  # calls in flight to the upstream at most: the lane's capacity
CALL_S = 0.25  # each call holds its slot this long
BURST = 40  # ten rounds of the lane: 2.5 s
LATE = 3
ARRIVES_AFTER_S = 0.3


async def test_a_late_organisation_is_not_starved_by_a_burst(
    simulator_url: str, flow_database_url: str, tmp_path: Path
) -> None:
    hog = await make_tenant(flow_database_url, f"hog-{uuid.uuid4().hex[:8]}")
    late = await make_tenant(flow_database_url, f"late-{uuid.uuid4().hex[:8]}")
    settings = gateway_settings(
        simulator_url,
        flow_database_url,
        tmp_path,
        upstream_tier="unlimited",
        upstream_max_concurrency=SLOTS,
    )
    with gateway(settings) as server:
        slow = f"slow:{CALL_S}"
        hog_sdk, late_sdk = client(server.url, hog.key), client(server.url, late.key)
        # Both keys known to the gateway and connected already, so the burst really arrives at once.
        assert all(outcome.ok for outcome in [await call(hog_sdk), await call(late_sdk)])
        began = time.monotonic()

        async def timed(sdk: AsyncAnthropic) -> tuple[Outcome, float]:
            """A call, and when it ended (seconds since the burst began)."""
            outcome = await call(sdk, fault=slow, deadline_ms=60_000)
            return outcome, time.monotonic() - began

        burst = [asyncio.create_task(timed(hog_sdk)) for _ in range(BURST)]
        await asyncio.sleep(ARRIVES_AFTER_S)
        latecomers = [asyncio.create_task(timed(late_sdk)) for _ in range(LATE)]
        burst_results = await asyncio.gather(*burst)
        late_results = await asyncio.gather(*latecomers)
        burst_done = [done for _, done in burst_results]
        late_done = [done for _, done in late_results]

        assert all(outcome.ok for outcome, _ in burst_results + late_results)
        # The burst needs BURST / SLOTS rounds of CALL_S; the latecomers' calls alternate with it.
        assert max(burst_done) >= BURST / SLOTS * CALL_S * 0.9, burst_done
        assert max(late_done) <= ARRIVES_AFTER_S + (LATE + 2) * CALL_S + 0.5, late_done
        assert max(late_done) < max(burst_done) - 1.0, (late_done, max(burst_done))
        # Most of the burst was still waiting when the latecomers were done.
        assert sum(done > max(late_done) for done in burst_done) >= BURST // 2, burst_done
