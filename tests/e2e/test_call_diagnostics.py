"""``claudegate calls show`` (the CLI, a subprocess) tells a call's story from any id its client saw: the
gateway's request id, the upstream's request-id and the message id; ``--curl`` reproduces a logged call with
its key masked, and says so when the organisation does not log payloads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import orjson
import pytest

from tests.e2e.conftest import Tenant, make_tenant
from tests.e2e.flow_support import FAULT_HEADER, MODEL, gateway, gateway_settings, simulator, usage_records

LOGGED_ORG = "diagnosed"


@pytest.fixture(scope="module")
def gateway_url(flow_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with simulator() as upstream:
        settings = gateway_settings(
            upstream.url,
            flow_database_url,
            tmp_path_factory.mktemp("calls"),
            upstream_tier="unlimited",
            retry_max_attempts=3,
            payload_log_orgs=[LOGGED_ORG],
        )
        with gateway(settings) as server:
            yield server.url


def cli(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEGATE_", "ANTHROPIC_"))}
    environment |= {"CLAUDEGATE_DATABASE_URL": database_url, **env}
    return subprocess.run(
        [sys.executable, "-m", "claudegate", *args],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


async def _retried_call(url: str, tenant: Tenant) -> tuple[dict[str, str], str]:
    sdk = anthropic.AsyncAnthropic(base_url=url, api_key=tenant.key, max_retries=0)
    raw = await sdk.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=10,
        messages=[{"role": "user", "content": f"diagnose me {uuid.uuid4().hex}"}],
        extra_headers={FAULT_HEADER: "overloaded;times=1"},  # the first attempt fails, the retry succeeds
    )
    message = await raw.parse()
    return dict(raw.headers), message.id


@pytest.fixture(scope="module")
async def logged(flow_database_url: str) -> Tenant:
    return await make_tenant(flow_database_url, LOGGED_ORG)


async def test_a_call_is_found_by_every_id_its_client_saw(
    gateway_url: str, flow_database_url: str, logged: Tenant
) -> None:
    tenant = logged
    headers, message_id = await _retried_call(gateway_url, tenant)
    await usage_records(flow_database_url, [tenant.key_id], 1)
    gateway_id = headers["x-claudegate-request-id"]
    shown: list[dict[str, Any]] = []
    for any_id in (gateway_id, headers["request-id"], message_id):
        result = cli(flow_database_url, "calls", "show", any_id, "--json")
        assert result.returncode == 0, result.stderr
        shown.append(orjson.loads(result.stdout))
    assert shown[0] == shown[1] == shown[2]
    call = shown[0]
    assert call["request_id"] == gateway_id
    assert call["message_id"] == message_id
    assert call["status"] == 200
    assert call["attempts"] == 2
    assert call["admission_wait_ms"] >= 0
    first, second = call["attempt_log"]
    assert first["upstream"] == second["upstream"] == "upstream"
    assert first["status"] == 529
    assert second["status"] == 200
    assert second["upstream_request_id"] == headers["request-id"]
    assert second["began_ms"] > first["began_ms"]

    table = cli(flow_database_url, "calls", "show", gateway_id)
    assert table.returncode == 0
    assert "attempts" in table.stdout
    assert "529" in table.stdout


async def test_curl_reproduces_a_logged_call_with_the_key_masked(
    gateway_url: str, flow_database_url: str, logged: Tenant
) -> None:
    tenant = logged
    headers, _ = await _retried_call(gateway_url, tenant)
    await usage_records(flow_database_url, [tenant.key_id], 1)
    result = cli(
        flow_database_url, "calls", "show", headers["x-claudegate-request-id"], "--curl", "--url", gateway_url
    )
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip()
    assert tenant.key not in command
    assert "$CLAUDEGATE_KEY" in command  # the key header is there, its value masked
    shell = await asyncio.create_subprocess_exec(
        "bash", "-c", command, env={**os.environ, "CLAUDEGATE_KEY": tenant.key}, stdout=subprocess.PIPE
    )
    stdout, _ = await shell.communicate()
    assert shell.returncode == 0
    reply = orjson.loads(stdout)
    assert reply["type"] == "message"
    assert reply["model"] == MODEL


async def test_curl_says_why_when_payloads_are_not_logged(gateway_url: str, flow_database_url: str) -> None:
    tenant = await make_tenant(flow_database_url, f"not-logged-{uuid.uuid4().hex[:6]}")
    headers, _ = await _retried_call(gateway_url, tenant)
    await usage_records(flow_database_url, [tenant.key_id], 1)
    result = cli(flow_database_url, "calls", "show", headers["x-claudegate-request-id"], "--curl")
    assert result.returncode == 1
    assert "payload logging is off for its organisation" in result.stderr
    unknown = cli(flow_database_url, "calls", "show", "req_does_not_exist")
    assert unknown.returncode == 1
    assert "no call with the id 'req_does_not_exist'" in unknown.stderr
