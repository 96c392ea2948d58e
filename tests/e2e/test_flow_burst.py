"""A burst far above the account's limits, as a user sees it: every call is either answered before its
deadline or refused at once by the gateway with an honest ``retry-after``, the upstream never answers 429,
and the account's allowance is used, not wasted.

The upstream is a simulator enforcing Anthropic's tier-1 limits (Sonnet: 50 requests, 30,000 input and
8,000 output tokens per minute, in buckets that hold a minute's allowance and refill continuously). Replies
are a few tokens long and fast, so the request limit is the one that binds: in a deadline of 10 s the account
allows the 50 requests its bucket holds plus 50/60 per second.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from pathlib import Path

from claudegate.simulator.settings import LatencyModel, SimulatorSettings
from tests.e2e.conftest import make_tenant
from tests.e2e.flow_support import call, client, gateway, gateway_settings, ledger, simulator

TIER1_RPM = 50
BURST = 100
DEADLINE_S = 10.0
FAST = LatencyModel(ttft_s=0.05, tokens_per_second=2000)
SLACK_S = 1.0  # for a reply's own duration and the machine's scheduling, on top of the deadline
# "At once": a tenth of the deadline. The refusal itself takes milliseconds; the bound allows for sending a
# hundred requests at once through one Python process that runs the client, the gateway and the simulator.
QUICK_REFUSAL_S = 1.0


async def test_a_tier1_burst_is_answered_in_time_or_refused_at_once(
    flow_database_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(flow_database_url, f"burst-{uuid.uuid4().hex[:8]}")
    with (
        simulator(SimulatorSettings(tier="1", latency=FAST)) as upstream,
        gateway(gateway_settings(upstream.url, flow_database_url, tmp_path, upstream_tier="1")) as server,
    ):
        sdk = client(server.url, tenant.key)
        texts = [f"burst call {number} {uuid.uuid4().hex}" for number in range(BURST)]
        began = time.monotonic()
        outcomes = await asyncio.gather(
            *(call(sdk, deadline_ms=int(DEADLINE_S * 1000), text=text) for text in texts)
        )
        burst_seconds = time.monotonic() - began
        seen = ledger(upstream.url)

        # The upstream never had to refuse anything: the gateway kept the burst within the account's limits.
        assert [entry for entry in seen if entry["status"] == 429] == []
        answered = [outcome for outcome in outcomes if outcome.ok]
        refused = [outcome for outcome in outcomes if not outcome.ok]
        assert len(seen) == len(answered), "every call the upstream saw was answered, none retried"

        # Each call either succeeded before its deadline or was refused at once by the gateway.
        for outcome in answered:
            assert outcome.seconds <= DEADLINE_S + SLACK_S, outcome
        for outcome in refused:
            assert outcome.status == 429, outcome
            assert outcome.error_type == "rate_limit_error", outcome
            assert outcome.from_gateway, outcome
            assert outcome.seconds <= QUICK_REFUSAL_S, outcome
            assert outcome.retry_after is not None, outcome
            # The wait until the call could start: at least a second, and no more than the whole burst
            # needs (BURST requests of an account allowing TIER1_RPM a minute).
            assert 1 <= outcome.retry_after <= math.ceil(BURST / TIER1_RPM * 60) + 1, outcome

        # The account's allowance was used: its bucket's 50 plus what refilled while the burst lasted.
        allowed = TIER1_RPM + TIER1_RPM / 60 * burst_seconds
        assert 45 <= len(answered) <= allowed + 1, (len(answered), allowed)
        assert len(refused) == BURST - len(answered)

        # retry-after is honest: a refused call that comes back when it was told finds its turn kept for it
        # and starts then, even with a deadline that leaves it only a second and a half of leeway.
        first = min(refused, key=lambda outcome: outcome.retry_after or math.inf)
        assert first.retry_after is not None
        refused_at = began + first.seconds
        await asyncio.sleep(max(0.0, refused_at + first.retry_after - time.monotonic()))
        retried = await call(sdk, deadline_ms=1500, text=texts[outcomes.index(first)])
        assert retried.ok, retried
        assert [entry for entry in ledger(upstream.url) if entry["status"] == 429] == []
