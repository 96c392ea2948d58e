"""``claudegate models sync`` against a simulator: silent success when the catalogue covers the upstream, a
report and exit 1 when the upstream serves a model the catalogue lacks or no price covers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from click.testing import Result
from typer.testing import CliRunner

from claudegate.accounting.prices import PriceTable
from claudegate.cli import app
from claudegate.cli.models import compare
from claudegate.simulator.server import SimulatorServer
from claudegate.simulator.settings import SimulatorSettings
from claudegate.wire.models import ModelCatalog, default_catalog
from tests.servers import running_in_thread

Cli = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Result:
        env = {"ANTHROPIC_API_KEY": "sk-sync-test", "CLAUDEGATE_UPSTREAM_URL": ""}
        with ThreadPoolExecutor(1) as pool:  # the command calls the SDK synchronously: away from the loop
            return pool.submit(CliRunner().invoke, app, list(args), env=env).result()

    return run


def test_a_catalogue_that_covers_the_upstream_passes(cli: Cli, simulator_url: str) -> None:
    result = cli("models", "sync", "--upstream-url", simulator_url, "--json")
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["ok"] is True
    assert report["missing"] == report["unpriced"] == report["changed"] == report["not_upstream"] == []


def test_a_model_the_catalogue_lacks_is_reported_and_fails(cli: Cli) -> None:
    newer = dataclasses.replace(
        default_catalog().models[0], id="claude-opus-9", display_name="Claude Opus 9", aliases=()
    )
    upstream_catalogue = ModelCatalog([newer, *default_catalog().models])
    with running_in_thread(
        lambda: SimulatorServer(SimulatorSettings(), catalog=upstream_catalogue)
    ) as server:
        assert isinstance(server, SimulatorServer)
        as_json = cli("models", "sync", "--upstream-url", server.url, "--json")
        as_table = cli("models", "sync", "--upstream-url", server.url)
    assert as_json.exit_code == 1
    report = orjson.loads(as_json.stdout)
    assert report["missing"] == [
        {"id": "claude-opus-9", "display_name": "Claude Opus 9", "lifecycle": "active"}
    ]
    assert report["unpriced"] == ["claude-opus-9"]
    assert as_table.exit_code == 1
    assert "claude-opus-9" in as_table.stdout
    assert "add to models.toml" in as_table.stdout


def test_changed_lifecycles_and_models_the_upstream_dropped_are_reported() -> None:
    served = [model.to_api() for model in default_catalog().models if model.id != "claude-opus-4-6"]
    fable = next(item for item in served if item["id"] == "claude-fable-5-2")
    fable |= {"lifecycle": "deprecated", "deprecated_at": "2027-01-01T00:00:00Z"}
    report = compare("http://upstream", served, default_catalog(), PriceTable.load())
    assert report.ok  # nothing missing or unpriced: worth a look, not a failure
    assert {(c["id"], c["field"], c["upstream"]) for c in report.changed} == {
        ("claude-fable-5-2", "lifecycle", "deprecated"),
        ("claude-fable-5-2", "deprecated_at", "2027-01-01T00:00:00Z"),
    }
    assert report.not_upstream == ["claude-opus-4-6"]


def test_without_a_key_it_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["models", "sync", "--upstream-url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "set ANTHROPIC_API_KEY" in result.output
