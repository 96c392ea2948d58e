"""The core checks against the real Anthropic API (api.anthropic.com), directly and through a local gateway.

Run them with a real key (they cost a few cents):

    CLAUDEGATE_LIVE=1 ANTHROPIC_API_KEY=sk-ant-... .venv/bin/pytest tests/live -q

Without ``CLAUDEGATE_LIVE=1`` this module is skipped whole (CI has no key and no internet). With it but
without ``ANTHROPIC_API_KEY`` the run fails at once: a live run that skipped would prove nothing.
``CLAUDEGATE_LIVE_MODEL`` picks the model (default: claude-haiku-4-5, the cheapest current one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

if os.environ.get("CLAUDEGATE_LIVE") != "1":
    pytest.skip("live API tests run only with CLAUDEGATE_LIVE=1", allow_module_level=True)
API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
if not API_KEY:
    pytest.fail(
        "CLAUDEGATE_LIVE=1 is set but ANTHROPIC_API_KEY is not: set a real key to run the live API tests, "
        "or unset CLAUDEGATE_LIVE",
        pytrace=False,
    )

from claudegate.accounting.prices import PriceTable  # noqa: E402 - only once the run is known to be live
from claudegate.cli.models import compare  # noqa: E402
from claudegate.wire.models import LIFECYCLES, default_catalog  # noqa: E402

ANTHROPIC_URL = "https://api.anthropic.com"
MODEL = os.environ.get("CLAUDEGATE_LIVE_MODEL", "claude-haiku-4-5")
HELLO: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Say hello in three words."}]


@pytest.fixture(scope="module")
def gateway_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A gateway on loopback in front of api.anthropic.com, and a gateway key for it."""
    import asyncio

    from claudegate.config import Settings
    from claudegate.store._engine import create_engine
    from claudegate.store.api_keys import KeyRepository
    from claudegate.store.migrate import upgrade_database
    from claudegate.store.orgs import OrgRepository
    from tests.e2e.conftest import GatewayServer
    from tests.servers import running_in_thread

    tmp: Path = tmp_path_factory.mktemp("live")
    database_url = f"sqlite+aiosqlite:///{tmp / 'claudegate.db'}"

    async def make_key() -> str:
        await upgrade_database(database_url)
        engine = create_engine(database_url)
        try:
            org = await OrgRepository(engine).create_org("live")
            return (await KeyRepository(engine).create_key(org_id=org.id, name="live")).key
        finally:
            await engine.dispose()

    key = asyncio.run(make_key())
    settings = Settings(
        upstream_url=ANTHROPIC_URL,
        anthropic_api_key=API_KEY,
        database_url=database_url,
        usage_spill_file=tmp / "usage-spill.jsonl",
    )
    with running_in_thread(lambda: GatewayServer(settings)) as server:
        assert isinstance(server, GatewayServer)
        yield server.url, key


@pytest.fixture(params=["direct", "gateway"])
def client(request: pytest.FixtureRequest) -> Iterator[anthropic.Anthropic]:
    if request.param == "direct":
        base_url, key = ANTHROPIC_URL, API_KEY
    else:
        base_url, key = request.getfixturevalue("gateway_key")
    with anthropic.Anthropic(
        base_url=base_url, api_key=key, max_retries=2, _strict_response_validation=True
    ) as made:
        yield made


def test_models_list_and_retrieve_validate(client: anthropic.Anthropic) -> None:
    listed = list(client.models.list(limit=100))
    assert listed
    assert all(model.lifecycle in LIFECYCLES for model in listed)
    one = client.models.retrieve(MODEL)
    assert one.id.startswith(MODEL)


def test_the_catalogue_knows_and_prices_every_model_the_api_serves(client: anthropic.Anthropic) -> None:
    served = [m.to_dict(mode="json") for m in client.models.list(limit=1000, lifecycle=list(LIFECYCLES))]
    report = compare(ANTHROPIC_URL, served, default_catalog(), PriceTable.load())
    assert not report.missing, f"add to data/models.toml: {report.missing}"
    assert not report.unpriced, f"add to data/prices.toml: {report.unpriced}"


def test_a_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)
    assert message.content
    assert message.usage.input_tokens > 0


def test_a_stream(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=32, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    assert final.stop_reason in ("end_turn", "max_tokens")


def test_count_tokens(client: anthropic.Anthropic) -> None:
    assert client.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens > 0


def test_a_beta_header(client: anthropic.Anthropic) -> None:
    message = client.beta.messages.create(
        model=MODEL,
        max_tokens=16,
        messages=[{"role": "user", "content": "Say hello in three words."}],
        betas=["token-efficient-tools-2025-02-19"],
    )
    assert message.content
