"""Per-key limits, set through the admin API, as the key's user and everyone else see them: a key over its
requests per minute is refused at once with a 429 that names its limit, and a key at its concurrency limit
waits for its own calls (or is refused when it cannot wait), while other keys and organisations go on
unaffected."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.e2e.conftest import GatewayServer, make_tenant
from tests.e2e.flow_support import call, client, gateway, gateway_settings

ADMIN_TOKEN = "admin-token-for-tests"
SLOW_S = 0.5


@pytest.fixture(scope="module")
def server(
    simulator_url: str, flow_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    settings = gateway_settings(
        simulator_url,
        flow_database_url,
        tmp_path_factory.mktemp("tenants"),
        upstream_tier="unlimited",
        admin_token=ADMIN_TOKEN,
    )
    with gateway(settings) as running:
        yield running


def set_key_limits(server: GatewayServer, key_id: int, **limits: Any) -> dict[str, Any]:
    response = httpx2.patch(
        f"{server.url}/admin/keys/{key_id}",
        json=limits,
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_key_over_its_requests_per_minute_is_refused_at_once(
    server: GatewayServer, flow_database_url: str
) -> None:
    limited = await make_tenant(flow_database_url, f"rpm-{uuid.uuid4().hex[:8]}")
    other = await make_tenant(flow_database_url, f"rpm-other-{uuid.uuid4().hex[:8]}")
    shown = set_key_limits(server, limited.key_id, requests_per_minute=2)
    assert shown["requests_per_minute"] == 2

    sdk = client(server.url, limited.key)
    first, second = [await call(sdk, deadline_ms=5_000) for _ in range(2)]
    assert first.ok, first
    assert second.ok, second

    # The third call in the minute cannot start within its 5 s deadline (the next request refills in
    # about 30 s): refused at once, by the gateway, naming the key's limit. Meanwhile another organisation's
    # calls, and the same organisation's other key, go through as if nothing happened.
    third, *others = await asyncio.gather(
        call(sdk, deadline_ms=5_000),
        *(call(client(server.url, other.key), deadline_ms=5_000) for _ in range(5)),
        *(call(client(server.url, limited.user_key), deadline_ms=5_000) for _ in range(3)),
    )
    assert third.status == 429, third
    assert third.error_type == "rate_limit_error"
    assert third.from_gateway, third
    assert third.seconds < 1.0, third  # rather than the 30 s the limit would make it wait
    assert "per-minute limits of its key" in third.message, third.message
    assert third.retry_after is not None
    assert 20 <= third.retry_after <= 30, third
    assert all(outcome.ok for outcome in others), others
    assert max(outcome.seconds for outcome in others) < 2.0, others


async def test_a_key_at_its_concurrency_limit_waits_for_its_own_calls(
    server: GatewayServer, flow_database_url: str
) -> None:
    tenant = await make_tenant(flow_database_url, f"conc-{uuid.uuid4().hex[:8]}")
    other = await make_tenant(flow_database_url, f"conc-other-{uuid.uuid4().hex[:8]}")
    set_key_limits(server, tenant.key_id, max_concurrency=1)
    sdk = client(server.url, tenant.key)
    slow = f"slow:{SLOW_S}"

    # Two calls at once: the second starts when the first ends. Another organisation's call meanwhile
    # takes only its own time.
    first, second, unaffected = await asyncio.gather(
        call(sdk, fault=slow, deadline_ms=10_000),
        call(sdk, fault=slow, deadline_ms=10_000),
        call(client(server.url, other.key), fault=slow, deadline_ms=10_000),
    )
    assert all(outcome.ok for outcome in (first, second, unaffected)), (first, second, unaffected)
    assert max(first.seconds, second.seconds) >= 2 * SLOW_S * 0.95, (first, second)
    assert min(first.seconds, second.seconds) < 2 * SLOW_S, (first, second)
    assert unaffected.seconds < 2 * SLOW_S, unaffected

    # A second call whose deadline comes before the first ends is refused by its deadline, with a 429
    # saying why, and the first is not disturbed.
    running = asyncio.create_task(call(sdk, fault="slow:1.5", deadline_ms=10_000))
    await asyncio.sleep(0.3)
    refused = await call(sdk, deadline_ms=300)
    assert refused.status == 429, refused
    assert refused.from_gateway, refused
    assert "calls in flight" in refused.message, refused.message
    assert refused.seconds < 1.0, refused
    assert (await running).ok
