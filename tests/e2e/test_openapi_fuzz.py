"""Every route in the gateway's OpenAPI description (``GET /openapi.json``), fuzzed with schemathesis
against a running gateway (and the simulator behind it) over loopback, on SQLite and on PostgreSQL: no
input, valid or not, may get a 5xx the gateway made, or hang.

A 5xx the upstream made, relayed as it came (Anthropic's envelope, without ``x-claudegate-origin``), is the
upstream's answer, not the gateway's failure: the simulator has tests of its own. Every operation gets
``EXAMPLES`` inputs, which keeps the whole run within about a minute.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis.generation import GenerationMode

from claudegate.store.migrate import upgrade_database
from tests.databases import fresh_postgres_database
from tests.e2e.conftest import GatewayServer, gateway_settings, make_tenant
from tests.servers import running_in_thread

ADMIN_TOKEN = "admin-token-for-fuzzing"
EXAMPLES = 25
# Path parameters for the inputs that break everything else. The shapes of ids in paths are checked by the
# gateway's routes (a malformed id is a 404 there); these fuzz what comes with a well-formed one.
WELL_SHAPED = {
    "model_id": "claude-sonnet-4-6",
    "batch_id": "msgbatch_0fuzz",
    "chat_id": "chat_0fuzz",
    "org": "fuzz-org",
    "user": "alice",
    "name": "greeting",
    "key_id": 1,
}
REPLY_TIMEOUT_S = 10.0  # a reply slower than this is a hang (the simulator behind answers at once)


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    key: str
    schema: Any


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def target(
    request: pytest.FixtureRequest, simulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    """A gateway of its own, on a database of its own (the fuzzer creates organisations, keys and prompts)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        async for target in _serve(f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}", simulator_url, tmp):
            yield target
        return
    async with fresh_postgres_database(request.getfixturevalue("postgres_url")) as url:
        async for target in _serve(url, simulator_url, tmp):
            yield target


async def _serve(database_url: str, simulator_url: str, tmp: Path) -> AsyncIterator[Target]:
    await upgrade_database(database_url)
    tenant = await make_tenant(database_url, f"fuzz-{uuid.uuid4().hex[:8]}")
    config = gateway_settings(simulator_url, database_url, tmp).model_copy(
        update={"admin_token": SecretStr(ADMIN_TOKEN)}
    )
    with running_in_thread(lambda: GatewayServer(config)) as server:
        assert isinstance(server, GatewayServer)
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        yield Target(url=server.url, key=tenant.key, schema=schema)


def test_no_input_gets_a_5xx_from_the_gateway(target: Target) -> None:
    operations = [result.ok() for result in target.schema.get_all_operations()]
    assert len(operations) >= 40  # every route is described (a shrunken description would fuzz little)
    for operation in operations:
        fuzz_operation(operation, target)


def fuzz_operation(operation: Any, target: Target) -> None:
    """``EXAMPLES`` inputs for one operation that fit its description, and as many that do not (bodies,
    queries and headers that break it, with well-shaped path parameters)."""
    fixed = {
        parameter.name: WELL_SHAPED[parameter.name]
        for parameter in operation.path_parameters
        if parameter.name in WELL_SHAPED
    }
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE, path_parameters=fixed
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same inputs on every run: a failure here is reproducible, never flaky
        database=None,
    )
    def run(case: Any) -> None:
        check(case, target)

    run()


def check(case: Any, target: Target) -> None:
    if case.path.startswith("/admin"):
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    else:
        headers = {"x-api-key": target.key, "anthropic-version": "2023-06-01"}
    response = case.call(base_url=target.url, headers=headers, timeout=REPLY_TIMEOUT_S)
    if response.status_code < 500:
        return
    relayed = response.headers.get("x-claudegate-origin") != "gateway" and _is_envelope(response)
    assert relayed, (
        f"{case.method} {case.formatted_path} gave {response.status_code}: {response.text[:500]}\n"
        f"reproduce with: {case.as_curl_command(headers=headers)}"
    )


def _is_envelope(response: Any) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("type") == "error"
