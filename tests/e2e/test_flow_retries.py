"""Retries, as a client sees them: an upstream error worth retrying is retried by the gateway, after the wait
the upstream asked for, and the client gets the answer of the attempt that worked, with one usage record
that counts the attempts. A retry that cannot finish before the call's deadline is not tried: the client
gets the upstream's error at once. Nothing is retried once the reply has started to reach the client.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from claudegate.simulator.server import SimulatorServer
from tests.e2e.conftest import GatewayServer, make_tenant
from tests.e2e.flow_support import (
    FAULT_HEADER,
    MODEL,
    call,
    client,
    gateway,
    gateway_settings,
    ledger,
    messages,
    simulator,
    usage_records,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[SimulatorServer]:
    with simulator() as server:
        yield server


@pytest.fixture(scope="module")
def server(
    upstream: SimulatorServer, flow_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    settings = gateway_settings(
        upstream.url, flow_database_url, tmp_path_factory.mktemp("retries"), upstream_tier="unlimited"
    )
    with gateway(settings) as running:
        yield running


async def test_a_429_is_retried_after_the_upstreams_retry_after(
    upstream: SimulatorServer, server: GatewayServer, flow_database_url: str
) -> None:
    tenant = await make_tenant(flow_database_url, f"retry-429-{uuid.uuid4().hex[:8]}")
    before = len(ledger(upstream.url))

    outcome = await call(client(server.url, tenant.key), fault="rate_limit:1;times=1", deadline_ms=10_000)

    assert outcome.ok, outcome
    assert outcome.seconds >= 0.95, "the retry waited for the upstream's retry-after: 1"
    assert [entry["status"] for entry in ledger(upstream.url)[before:]] == [429, 200]
    records = await usage_records(flow_database_url, [tenant.key_id], 1)
    assert [(r["status"], r["attempts"], r["upstream"]) for r in records] == [(200, 2, "upstream")]
    assert records[0]["output_tokens"] > 0


async def test_overloaded_twice_then_answered_takes_three_attempts(
    upstream: SimulatorServer, server: GatewayServer, flow_database_url: str
) -> None:
    tenant = await make_tenant(flow_database_url, f"retry-529-{uuid.uuid4().hex[:8]}")
    before = len(ledger(upstream.url))

    outcome = await call(client(server.url, tenant.key), fault="overloaded;times=2", deadline_ms=10_000)

    assert outcome.ok, outcome
    # Two backoffs (0.5 s then 1 s, less up to a quarter of jitter) between the three attempts.
    assert outcome.seconds >= 1.1, outcome
    assert [entry["status"] for entry in ledger(upstream.url)[before:]] == [529, 529, 200]
    records = await usage_records(flow_database_url, [tenant.key_id], 1)
    assert [(r["status"], r["attempts"]) for r in records] == [(200, 3)]


@pytest.mark.parametrize(
    ("change", "fault", "status", "error_type"),
    [
        pytest.param({"temperature": "0.5"}, None, 400, "invalid_request_error", id="400-wrong-type"),
        pytest.param({"max_tokens": 10**9}, None, 400, "invalid_request_error", id="400-too-many-tokens"),
        pytest.param({}, "billing", 402, "billing_error", id="402"),
        pytest.param({}, "permission", 403, "permission_error", id="403"),
    ],
)
async def test_a_4xx_from_the_upstream_is_answered_after_one_attempt(
    upstream: SimulatorServer,
    server: GatewayServer,
    flow_database_url: str,
    change: dict[str, object],
    fault: str | None,
    status: int,
    error_type: str,
) -> None:
    """Another try of a request the upstream refused gets the same refusal: the client hears it at once."""
    tenant = await make_tenant(flow_database_url, f"retry-4xx-{uuid.uuid4().hex[:8]}")
    sdk = client(server.url, tenant.key)
    before = len(ledger(upstream.url))

    with pytest.raises(anthropic.APIStatusError) as caught:
        await sdk.messages.create(
            model=MODEL,
            max_tokens=16,
            messages=messages(),
            extra_body=change,  # what the SDK's own types would not let through
            extra_headers={FAULT_HEADER: fault} if fault else None,
        )

    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == error_type  # type: ignore[index]
    assert [entry["status"] for entry in ledger(upstream.url)[before:]] == [status]
    records = await usage_records(flow_database_url, [tenant.key_id], 1)
    assert [(r["status"], r["attempts"], r["error_type"]) for r in records] == [(status, 1, error_type)]


async def test_a_reply_cut_off_before_its_body_is_complete_is_retried(
    upstream: SimulatorServer, server: GatewayServer, flow_database_url: str
) -> None:
    tenant = await make_tenant(flow_database_url, f"retry-drop-{uuid.uuid4().hex[:8]}")
    before = len(ledger(upstream.url))

    outcome = await call(client(server.url, tenant.key), fault="drop_connection;times=1", deadline_ms=10_000)

    # Nothing of the cut reply reached the client, so the gateway asked again and relayed the second one.
    assert outcome.ok, outcome
    assert len(ledger(upstream.url)[before:]) == 2
    records = await usage_records(flow_database_url, [tenant.key_id], 1)
    assert [(r["status"], r["attempts"], r["error_type"]) for r in records] == [(200, 2, None)]
    assert records[0]["output_tokens"] > 0


async def test_a_retry_after_beyond_the_deadline_is_not_waited_for(
    flow_database_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(flow_database_url, f"retry-late-{uuid.uuid4().hex[:8]}")
    # A gateway of its own: the upstream's 429 pauses the whole lane, which other tests must not inherit.
    with (
        simulator() as upstream,
        gateway(
            gateway_settings(upstream.url, flow_database_url, tmp_path, upstream_tier="unlimited")
        ) as own,
    ):
        sdk = client(own.url, tenant.key)

        outcome = await call(sdk, fault="rate_limit:30", deadline_ms=5_000)

        # The upstream's own 429, relayed at once: waiting 30 s could not meet a 5 s deadline.
        assert outcome.status == 429, outcome
        assert not outcome.from_gateway, outcome
        assert outcome.retry_after == 30
        assert outcome.seconds < 1.0, outcome
        assert [entry["status"] for entry in ledger(upstream.url)] == [429]
        records = await usage_records(flow_database_url, [tenant.key_id], 1)
        assert [(r["status"], r["attempts"], r["error_type"]) for r in records] == [
            (429, 1, "rate_limit_error")
        ]

        # The gateway heeds that retry-after for every call: until it has passed, calls that cannot wait
        # that long are refused by the gateway itself, at once, without troubling the upstream.
        refused = await call(sdk, deadline_ms=5_000)
        assert refused.status == 429, refused
        assert refused.from_gateway, refused
        assert refused.retry_after is not None
        assert 25 <= refused.retry_after <= 30, refused
        assert refused.seconds < 1.0, refused
        assert len(ledger(upstream.url)) == 1


async def test_nothing_is_retried_once_a_stream_has_started(
    upstream: SimulatorServer, server: GatewayServer, flow_database_url: str
) -> None:
    tenant = await make_tenant(flow_database_url, f"retry-stream-{uuid.uuid4().hex[:8]}")
    before = len(ledger(upstream.url))
    sdk = client(server.url, tenant.key)
    received: list[str] = []

    with pytest.raises(anthropic.APIStatusError) as caught:  # noqa: PT012 - the error comes while iterating
        stream = await sdk.messages.create(
            model=MODEL,
            max_tokens=200,
            messages=messages(),
            stream=True,
            extra_headers={FAULT_HEADER: "midstream_error:overloaded_error"},
        )
        async for event in stream:
            received.append(event.type)

    # The client saw the reply begin, then the error event, exactly as the upstream sent them.
    assert "content_block_delta" in received
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert [entry["status"] for entry in ledger(upstream.url)[before:]] == [200]
    records = await usage_records(flow_database_url, [tenant.key_id], 1)
    assert [(r["attempts"], r["streamed"], r["error_type"]) for r in records] == [
        (1, True, "overloaded_error")
    ]
