"""Every call through the gateway leaves exactly one usage record, and its tokens are what the upstream says
it charged: checked against the simulator's ledger after a mixed run of successes, upstream errors, broken
streams and clients that hang up half way."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from claudegate.simulator.settings import SimulatorSettings
from claudegate.wire.sse import SSEParser
from tests.e2e.conftest import (
    SLOW_REPLY_TOKENS,
    GatewayServer,
    Stack,
    Tenant,
    gateway_settings,
    make_tenant,
    usage_rows,
)
from tests.servers import running_in_thread

MODEL = "claude-sonnet-4-6"
# One content delta carries this many tokens (the simulator's default).
TOKENS_PER_DELTA = SimulatorSettings().tokens_per_delta


@dataclass(frozen=True, slots=True)
class Call:
    kind: str  # plain, stream, fault, midstream, drop, hangup
    tenant: Tenant
    user_key: bool
    stream: bool = False
    fault: str | None = None


@dataclass(slots=True)
class Outcome:
    call: Call
    gateway_request_id: str
    upstream_request_id: str
    status: int
    streamed: bool
    error_type: str | None
    received_tokens: int | None = None  # for hang-ups: tokens the client saw before it left


def mixed_calls(a: Tenant, b: Tenant) -> list[Call]:
    """Forty calls over both organisations' service and user keys.

    Left out: ``drop_connection`` and ``midstream_error`` on non-streamed calls. A non-streamed reply cut
    half way carries no usage the gateway could read, and for a non-streamed ``midstream_error`` (a 529
    after the reply was generated) the simulator's ledger keeps the input tokens although the client was
    only sent an error; neither can match the ledger, by construction.
    """
    tenants = [(a, False), (a, True), (b, False), (b, True)]
    specs: list[tuple[str, bool, str | None]] = [
        *[("plain", False, None)] * 11,
        *[("stream", True, None)] * 10,
        ("fault", False, "overloaded"),
        ("fault", False, "overloaded"),
        ("fault", True, "overloaded"),
        ("fault", False, "server_error"),
        ("fault", True, "server_error"),
        ("fault", False, "server_error"),
        ("fault", False, "timeout"),
        *[("midstream", True, "midstream_error:overloaded_error")] * 2,
        ("midstream", True, "midstream_error:api_error"),
        *[("drop", True, "drop_connection")] * 3,
        *[("hangup", True, None)] * 6,
    ]
    calls = []
    for i, (kind, stream, fault) in enumerate(specs):
        tenant, user_key = tenants[i % len(tenants)]
        calls.append(Call(kind, tenant, user_key, stream, fault))
    return calls


def key_of(call: Call) -> str:
    return call.tenant.user_key if call.user_key else call.tenant.key


async def make_call(url: str, call: Call, index: int) -> Outcome:
    """Make one call the way a client would, and note what the gateway answered."""
    headers = {"x-simulator-fault": call.fault} if call.fault else {}
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": f"Call number {index}: tell me something."}],
        "extra_headers": headers,
    }
    if call.kind == "hangup":
        return await hang_up(url, call, params)
    async with anthropic.AsyncAnthropic(base_url=url, api_key=key_of(call), max_retries=0) as client:
        return await sdk_call(client, call, params)


async def sdk_call(client: anthropic.AsyncAnthropic, call: Call, params: dict[str, Any]) -> Outcome:
    try:
        if call.stream:
            stream = await client.messages.create(**params, stream=True)
            response = stream.response
            try:
                async for _event in stream:
                    pass
            except (anthropic.APIError, httpx2.HTTPError):
                assert call.kind in ("midstream", "drop")
        else:
            raw = await client.messages.with_raw_response.create(**params)
            response = raw.http_response
    except anthropic.APIStatusError as error:
        assert call.kind == "fault"
        response = error.response
    body = response.json() if response.headers["content-type"].startswith("application/json") else None
    error_type = body["error"]["type"] if body and body.get("type") == "error" else None
    if call.kind == "midstream":
        error_type = call.fault.split(":")[1] if call.fault else None
    if call.kind == "drop":
        error_type = "incomplete_stream"
    return Outcome(
        call=call,
        gateway_request_id=response.headers["x-claudegate-request-id"],
        upstream_request_id=response.headers["request-id"],
        status=response.status_code,
        streamed=response.headers["content-type"].startswith("text/event-stream"),
        error_type=error_type,
    )


async def hang_up(url: str, call: Call, params: dict[str, Any]) -> Outcome:
    """Read a few events of a long reply, then close the connection as an impatient client does."""
    body = {k: v for k, v in params.items() if k != "extra_headers"}
    headers = {
        "x-api-key": key_of(call),
        "anthropic-version": "2023-06-01",
        "x-simulator-reply-tokens": str(SLOW_REPLY_TOKENS),
    }
    parser = SSEParser()
    received = 0
    async with (
        httpx2.AsyncClient(timeout=30) as http,
        http.stream("POST", f"{url}/v1/messages", json={**body, "stream": True}, headers=headers) as response,
    ):
        async for chunk in response.aiter_bytes():
            for event in parser.feed(chunk):
                if event.event == "content_block_delta":
                    received += 1
            if received >= 4:
                break
        outcome = Outcome(
            call=call,
            gateway_request_id=response.headers["x-claudegate-request-id"],
            upstream_request_id=response.headers["request-id"],
            status=499,  # what the gateway records for a call its client abandoned
            streamed=True,
            error_type="client_disconnected",
            received_tokens=received * TOKENS_PER_DELTA,
        )
    return outcome


async def wait_for_records(database_url: str, key_ids: list[int], count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        rows = await usage_rows(database_url, key_ids)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


def ledger(simulator_url: str) -> dict[str, dict[str, Any]]:
    entries = httpx2.get(f"{simulator_url}/_simulator/ledger", timeout=10).json()
    return {entry["request_id"]: entry for entry in entries}


@pytest.mark.timeout(60)
async def test_every_call_is_recorded_with_the_upstreams_token_counts(
    stack: Stack, slow_gateway_url: str, slow_simulator_url: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    a = await make_tenant(stack.database_url, f"acct-a-{suffix}")
    b = await make_tenant(stack.database_url, f"acct-b-{suffix}")
    calls = mixed_calls(a, b)
    assert len(calls) == 40
    outcomes = await asyncio.gather(*(make_call(slow_gateway_url, call, i) for i, call in enumerate(calls)))
    hung_up_at = time.monotonic()

    key_ids = [a.key_id, a.user_key_id, b.key_id, b.user_key_id]
    rows = await wait_for_records(stack.database_url, key_ids, len(calls))
    assert len(rows) == len(calls)
    by_request = {row["request_id"]: row for row in rows}
    assert sorted(by_request) == sorted(o.gateway_request_id for o in outcomes)

    # Hang-ups: give a still-running upstream call time to show itself in the ledger before reading it.
    await asyncio.sleep(max(0.0, 0.3 - (time.monotonic() - hung_up_at)))
    charged = ledger(slow_simulator_url)
    for outcome in outcomes:
        call, row = outcome.call, by_request[outcome.gateway_request_id]
        what = f"{call.kind} {call.fault or ''}: {row}"
        assert row["org_id"] == call.tenant.org_id, what
        assert row["key_id"] == (call.tenant.user_key_id if call.user_key else call.tenant.key_id), what
        assert row["user_id"] == (call.tenant.user_id if call.user_key else None), what
        assert row["status"] == outcome.status, what
        assert bool(row["streamed"]) == outcome.streamed, what
        assert row["error_type"] == outcome.error_type, what
        assert row["model"] == MODEL, what
        assert row["upstream_request_id"] == outcome.upstream_request_id, what

        entry = charged[outcome.upstream_request_id]
        assert row["input_tokens"] == entry["input_tokens"], what
        assert row["cache_creation_input_tokens"] == entry["cache_creation_input_tokens"], what
        assert row["cache_read_input_tokens"] == entry["cache_read_input_tokens"], what
        if call.kind == "hangup":
            # The gateway counts the tokens of the deltas that reached it; the simulator counts a delta as
            # produced just before writing it. The delta it was writing when the gateway closed the
            # connection is counted upstream but never arrives, and on a loaded machine one more may be
            # written (a delta every 15 ms here) while the gateway's notice of the hang-up waits for its
            # turn on the event loop: the two may differ by those deltas, and no more.
            assert 0 <= entry["output_tokens"] - row["output_tokens"] <= 2 * TOKENS_PER_DELTA, what
            assert row["output_tokens"] >= (outcome.received_tokens or 0), what
            # The upstream call was cancelled: generation stopped far short of the reply's length.
            assert not entry["completed"], what
            assert entry["output_tokens"] < SLOW_REPLY_TOKENS // 2, what
        else:
            assert row["output_tokens"] == entry["output_tokens"], what
        if call.kind in ("plain", "stream"):
            assert entry["completed"], what
            assert row["output_tokens"] > 0, what
            assert row["cost_usd"] is not None, what
            assert row["cost_usd"] > 0, what

    # A hang-up's upstream call stays stopped: a later look at the ledger finds no more tokens.
    await asyncio.sleep(0.2)
    later = ledger(slow_simulator_url)
    for outcome in outcomes:
        if outcome.call.kind == "hangup":
            entry = later[outcome.upstream_request_id]
            assert entry["output_tokens"] == charged[outcome.upstream_request_id]["output_tokens"]


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry these labels (0 when there are none)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_show_the_calls_and_the_gateway_is_ready(stack: Stack) -> None:
    tenant = await make_tenant(stack.database_url, f"metrics-{uuid.uuid4().hex[:8]}")
    client = anthropic.AsyncAnthropic(base_url=stack.url, api_key=tenant.key, max_retries=0)
    hello: Any = [{"role": "user", "content": "Hi"}]
    async with httpx2.AsyncClient(base_url=stack.url) as http:
        before = (await http.get("/metrics")).text
        for _ in range(3):
            await client.messages.create(model=MODEL, max_tokens=50, messages=hello)
        async with client.messages.stream(model=MODEL, max_tokens=50, messages=hello) as stream:
            await stream.get_final_message()
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(
                model=MODEL, max_tokens=50, messages=hello, extra_headers={"x-simulator-fault": "overloaded"}
            )
        # A stream the upstream cuts ends with an error event, as Anthropic ends a failed stream.
        with pytest.raises(anthropic.APIStatusError) as cut:  # noqa: PT012
            events = await client.messages.create(
                model=MODEL,
                max_tokens=50,
                messages=hello,
                stream=True,
                extra_headers={"x-simulator-fault": "drop_connection"},
            )
            async for _event in events:
                pass
        assert cut.value.body["error"]["type"] == "api_error"  # type: ignore[index]
        after = (await http.get("/metrics")).text
        ready = await http.get("/health/ready")

    org = tenant.org_name
    assert metric(after, "claudegate_requests_total", status="200", model=MODEL, org=org) == 5
    assert metric(after, "claudegate_requests_total", status="529", model=MODEL, org=org) == 1
    assert metric(after, "claudegate_tokens_total", kind="output", model=MODEL, org=org) > 0
    assert metric(after, "claudegate_cost_usd_total", model=MODEL, org=org) > 0
    assert metric(after, "claudegate_time_to_first_token_seconds_count", model=MODEL) > metric(
        before, "claudegate_time_to_first_token_seconds_count", model=MODEL
    )
    # Two upstream failures (a 529 and a cut stream), each counted once.
    errors = metric(after, "claudegate_upstream_errors_total") - metric(
        before, "claudegate_upstream_errors_total"
    )
    assert errors == 2
    assert metric(after, "claudegate_in_flight_calls") == 0
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


async def test_an_unreachable_upstream_is_reported_not_hidden(stack: Stack, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    settings = gateway_settings(dead, stack.database_url, tmp_path)
    tenant = await make_tenant(stack.database_url, f"dead-{uuid.uuid4().hex[:8]}")
    with running_in_thread(lambda: GatewayServer(settings)) as server:
        assert isinstance(server, GatewayServer)
        client = anthropic.AsyncAnthropic(base_url=server.url, api_key=tenant.key, max_retries=0)
        with pytest.raises(anthropic.InternalServerError) as caught:
            await client.messages.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
            )
        assert caught.value.response.headers["x-claudegate-origin"] == "gateway"
        assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
        async with httpx2.AsyncClient(base_url=server.url) as http:
            ready = await http.get("/health/ready")
            metrics = (await http.get("/metrics")).text
    assert ready.status_code == 503
    assert ready.json()["database"] == "ok"
    assert ready.json()["upstream"]["status"] != "ok"
    assert metric(metrics, "claudegate_upstream_errors_total") == 1
    rows = await wait_for_records(stack.database_url, [tenant.key_id], 1)
    assert [(row["status"], row["error_type"]) for row in rows] == [(500, "api_error")]


async def test_a_client_that_gives_up_before_the_reply_begins_is_recorded_at_once(
    stack: Stack, slow_gateway_url: str
) -> None:
    """A non-streamed reply begins only once it is whole; a client that times out before then leaves a
    record of a client-closed call straight away, not once the upstream finishes the reply for no one."""
    tenant = await make_tenant(stack.database_url, f"impatient-{uuid.uuid4().hex[:8]}")
    client = anthropic.AsyncAnthropic(
        base_url=slow_gateway_url, api_key=tenant.key, max_retries=0, timeout=0.3
    )
    with pytest.raises(anthropic.APITimeoutError):
        await client.messages.create(
            model=MODEL,
            max_tokens=400,
            messages=[{"role": "user", "content": "Take your time."}],
            extra_headers={"x-simulator-reply-tokens": str(SLOW_REPLY_TOKENS)},  # a second's work upstream
        )
    rows = await wait_for_records(stack.database_url, [tenant.key_id], 1)
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["error_type"], row["streamed"]) == (499, "client_disconnected", False)
    assert row["latency_ms"] < 800  # the gateway stopped waiting when its client left
