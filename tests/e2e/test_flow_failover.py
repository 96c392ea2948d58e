"""Failover, as a client sees it: when the preferred upstream fails, calls keep succeeding through the
next one, promptly; once the failing upstream has failed often enough its circuit breaker opens and calls
stop trying it at all; when it recovers, a health probe notices after the open period and traffic returns.
Usage records name the upstream that served each call and count the attempts it took.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from claudegate.config import Settings, UpstreamSettings
from claudegate.flow.breaker import BreakerState
from claudegate.simulator.settings import FaultRate, SimulatorSettings
from tests.e2e.conftest import GatewayServer, make_tenant
from tests.e2e.flow_support import call, client, gateway, gateway_settings, ledger, simulator, usage_records

THRESHOLD = 3
OPEN_S = 2.0
BROKEN = SimulatorSettings(faults=(FaultRate("server_error", 1.0),))


def primary_and_secondary(primary: str, secondary: str, database_url: str, tmp: Path) -> Settings:
    """A gateway preferring the primary upstream, failing over to the secondary, with a quick breaker."""
    return gateway_settings(
        None,
        database_url,
        tmp,
        upstreams=[
            UpstreamSettings(name="primary", url=primary, api_key="k", priority=0, tier="unlimited"),
            UpstreamSettings(name="secondary", url=secondary, api_key="k", priority=1, tier="unlimited"),
        ],
        breaker_failure_threshold=THRESHOLD,
        breaker_open_s=OPEN_S,
    )


def breaker_state(server: GatewayServer, name: str) -> BreakerState:
    member = server.gateway.services.pool.get(name)
    assert member is not None
    return member.breaker.state(time.monotonic())


async def test_calls_fail_over_while_the_primary_fails_and_return_when_it_recovers(
    flow_database_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(flow_database_url, f"failover-{uuid.uuid4().hex[:8]}")
    with simulator() as secondary, ExitStack() as broken:
        primary = broken.enter_context(simulator(BROKEN))
        settings = primary_and_secondary(primary.url, secondary.url, flow_database_url, tmp_path)
        with gateway(settings) as server:
            sdk = client(server.url, tenant.key)

            # Every call succeeds. Until the breaker opens, each tries the primary first and fails over to
            # the secondary at once (no backoff: the secondary has not failed it); then the primary is
            # left alone.
            outcomes = [await call(sdk, deadline_ms=10_000) for _ in range(2 * THRESHOLD)]
            assert all(outcome.ok for outcome in outcomes), outcomes
            assert max(outcome.seconds for outcome in outcomes) < 1.0, outcomes
            assert breaker_state(server, "primary") is BreakerState.OPEN
            assert [entry["status"] for entry in ledger(primary.url)] == [500] * THRESHOLD
            assert [entry["status"] for entry in ledger(secondary.url)] == [200] * (2 * THRESHOLD)
            records = await usage_records(flow_database_url, [tenant.key_id], 2 * THRESHOLD)
            assert [(r["status"], r["upstream"], r["attempts"]) for r in records] == [
                *[(200, "secondary", 2)] * THRESHOLD,
                *[(200, "secondary", 1)] * THRESHOLD,
            ]

            # The primary recovers: a healthy server on the same port. Once the open period has passed, the
            # probe finds it healthy and closes the breaker, without a client's call having to be the test.
            port = primary.port
            broken.close()
            with simulator(port=port) as recovered:
                give_up = time.monotonic() + OPEN_S + 5
                while breaker_state(server, "primary") is not BreakerState.CLOSED:
                    assert time.monotonic() < give_up, "the probe did not close the primary's breaker"
                    await asyncio.sleep(0.1)
                assert ledger(recovered.url) == [], "the probe is not a call: it costs no tokens"

                back = [await call(sdk, deadline_ms=10_000) for _ in range(3)]
                assert all(outcome.ok for outcome in back), back
                assert [entry["status"] for entry in ledger(recovered.url)] == [200] * 3
                records = await usage_records(flow_database_url, [tenant.key_id], 2 * THRESHOLD + 3)
                assert [(r["upstream"], r["attempts"]) for r in records[2 * THRESHOLD :]] == [
                    ("primary", 1)
                ] * 3


async def test_an_upstream_that_answers_its_health_probe_but_fails_calls_costs_one_call_per_open_period(
    flow_database_url: str, tmp_path: Path
) -> None:
    """The probe (GET /v1/models) passes on an upstream whose /v1/messages still fails: the breaker closes on
    trial, and the first call that fails there opens it again at once, instead of THRESHOLD more calls."""
    tenant = await make_tenant(flow_database_url, f"trial-{uuid.uuid4().hex[:8]}")
    with simulator() as secondary, simulator(BROKEN) as primary:
        settings = primary_and_secondary(primary.url, secondary.url, flow_database_url, tmp_path)
        with gateway(settings) as server:
            sdk = client(server.url, tenant.key)
            outcomes = [await call(sdk, deadline_ms=10_000) for _ in range(THRESHOLD)]
            assert all(outcome.ok for outcome in outcomes), outcomes
            assert breaker_state(server, "primary") is BreakerState.OPEN

            member = server.gateway.services.pool.get("primary")
            assert member is not None
            give_up = time.monotonic() + OPEN_S + 5
            while not member.breaker.on_trial:  # the probe passed: the models list still answers
                assert time.monotonic() < give_up, "the probe did not find the primary answering"
                await asyncio.sleep(0.05)

            later = [await call(sdk, deadline_ms=10_000) for _ in range(THRESHOLD + 2)]
            assert all(outcome.ok for outcome in later), later
            assert breaker_state(server, "primary") is BreakerState.OPEN
            # One call paid for the trial (and was failed over), not THRESHOLD of them.
            assert [entry["status"] for entry in ledger(primary.url)] == [500] * (THRESHOLD + 1)
            records = await usage_records(flow_database_url, [tenant.key_id], 2 * THRESHOLD + 2)
            assert [(r["upstream"], r["attempts"]) for r in records[THRESHOLD:]] == [
                ("secondary", 2),
                *[("secondary", 1)] * (THRESHOLD + 1),
            ]
