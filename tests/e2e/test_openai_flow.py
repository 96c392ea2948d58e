"""Calls through the OpenAI door get the pipeline's flow control like native ones: an upstream error worth
retrying is retried by the gateway, and the OpenAI client gets the answer of the attempt that worked, with
one usage record that counts the attempts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import openai
import pytest

from tests.e2e.conftest import GatewayServer, make_tenant
from tests.e2e.flow_support import FAULT_HEADER, MODEL, gateway, gateway_settings, usage_records


@pytest.fixture(scope="module")
def server(
    simulator_url: str, flow_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    settings = gateway_settings(
        simulator_url, flow_database_url, tmp_path_factory.mktemp("openai-flow"), upstream_tier="unlimited"
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
