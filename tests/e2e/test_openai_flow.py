"""Calls through the OpenAI door get the pipeline's flow control like native ones: an upstream error worth
retrying is retried by the gateway, and the OpenAI client gets the answer of the attempt that worked, with
one usage record that counts the attempts; a key over its limits is refused at once with a 429 the OpenAI
SDK raises as RateLimitError, with the wait in retry-after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx2
import openai
import pytest

from tests.e2e.conftest import GatewayServer, make_tenant
from tests.e2e.flow_support import FAULT_HEADER, MODEL, gateway, gateway_settings, usage_records

ADMIN_TOKEN = "admin-token-for-openai-tests"


@pytest.fixture(scope="module")
def server(
    simulator_url: str, flow_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    settings = gateway_settings(
        simulator_url,
        flow_database_url,
        tmp_path_factory.mktemp("openai-flow"),
        upstream_tier="unlimited",
        admin_token=ADMIN_TOKEN,
    )
    with gateway(settings) as running:
        yield running


@pytest.mark.parametrize("stream", [False, True])
async def test_an_overloaded_upstream_is_retried_for_an_openai_client(
    server: GatewayServer, flow_database_url: str, stream: bool
) -> None:
    tenant = await make_tenant(flow_database_url, f"openai-retry-{uuid.uuid4().hex[:8]}")
    sdk = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=tenant.key, max_retries=0)
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Hello {uuid.uuid4().hex}"}],  # its own fault count
        "extra_headers": {FAULT_HEADER: "overloaded;times=2"},
    }
    if stream:
        chunks = [chunk async for chunk in await sdk.chat.completions.create(**request, stream=True)]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        completion = await sdk.chat.completions.create(**request)
        assert completion.choices[0].message.content

    [record] = await usage_records(flow_database_url, [tenant.key_id], 1)
    assert (record["status"], record["attempts"], record["api"]) == (200, 3, "openai")


async def test_a_key_over_its_requests_per_minute_gets_rate_limit_error_with_retry_after(
    server: GatewayServer, flow_database_url: str
) -> None:
    tenant = await make_tenant(flow_database_url, f"openai-rpm-{uuid.uuid4().hex[:8]}")
    limited = httpx2.patch(
        f"{server.url}/admin/keys/{tenant.key_id}",
        json={"requests_per_minute": 1},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert limited.status_code == 200, limited.text
    sdk = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=tenant.key, max_retries=0)
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello"}],
        "extra_headers": {"x-claudegate-deadline-ms": "2000"},
    }
    first = await sdk.chat.completions.create(**request)
    assert first.choices[0].message.content

    with pytest.raises(openai.RateLimitError) as raised:
        await sdk.chat.completions.create(**request)
    response = raised.value.response
    assert raised.value.code == "rate_limit_exceeded"
    assert "per-minute limits of its key" in raised.value.message
    assert response.headers["x-claudegate-origin"] == "gateway"
    assert 20 <= int(response.headers["retry-after"]) <= 61  # the next request of a minute's allowance
    records = await usage_records(flow_database_url, [tenant.key_id], 2)
    assert [(r["status"], r["api"]) for r in records] == [(200, "openai"), (429, "openai")]
