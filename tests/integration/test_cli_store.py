"""``claudegate keys``, ``usage`` and ``db`` through the real command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from click.testing import Result
from typer.testing import CliRunner

from claudegate.accounting.usage import UsageRecord
from claudegate.cli import app
from claudegate.keys import hash_key
from claudegate.store import Store

Cli = Callable[..., Result]


@pytest.fixture
def cli(migrated_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run ``claudegate ARGS`` against the test database. Each command calls asyncio.run(), so it runs in a
    thread of its own, away from the test session's event loop."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLAUDEGATE_ADMIN_TOKEN", raising=False)
    env = {"CLAUDEGATE_DATABASE_URL": migrated_database_url}

    def run(*args: str) -> Result:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(CliRunner().invoke, app, list(args), env=env).result()

    return run


def test_keys_create_list_revoke(cli: Cli, migrated_database_url: str) -> None:
    created = cli("keys", "create", "--org", "acme", "--user", "alice", "--name", "laptop", "--json")
    assert created.exit_code == 0, created.output
    key = orjson.loads(created.stdout)
    assert re.fullmatch(r"cg-[A-Za-z0-9_-]{40}", key["key"])
    assert (key["org"], key["user"], key["name"], key["prefix"]) == (
        "acme",
        "alice",
        "laptop",
        key["key"][:10],
    )
    assert isinstance(key["id"], int)

    listed = cli("keys", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert key["key"] not in listed.stdout
    (row,) = orjson.loads(listed.stdout)
    assert (row["id"], row["prefix"], row["active"]) == (key["id"], key["key"][:10], True)

    table = cli("keys", "list", "--org", "acme")
    assert table.exit_code == 0
    assert key["prefix"] in table.stdout
    assert key["key"] not in table.stdout

    revoked = cli("keys", "revoke", str(key["id"]))
    assert revoked.exit_code == 0, revoked.output
    assert "Revoked key" in revoked.stdout
    (row,) = orjson.loads(cli("keys", "list", "--json").stdout)
    assert row["active"] is False
    assert row["revoked_at"]
    assert "already revoked" in cli("keys", "revoke", str(key["id"])).stdout

    async def still_active() -> bool:
        store = await Store.open(migrated_database_url)
        try:
            return await store.keys.find_active_key(hash_key(key["key"])) is not None
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, still_active()).result() is False


def test_keys_create_prints_the_key_once_with_a_warning(cli: Cli) -> None:
    result = cli("keys", "create", "--org", "acme")
    assert result.exit_code == 0, result.output
    assert re.search(r"cg-[A-Za-z0-9_-]{40}", result.stdout)
    assert "cannot show it again" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "list", "--org", "nobody"), "no organization named 'nobody'"),
        (("keys", "revoke", "4242"), "no key with id 4242"),
        (("keys", "create", "--org", "bad name"), "organization name 'bad name' is not allowed"),
        (("usage", "--since", "last tuesday"), "since must be a date"),
        (("usage", "--org", "nobody"), "no organization named 'nobody'"),
    ],
)
def test_mistakes_get_one_clear_line_and_a_nonzero_exit(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    result = cli(*args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_usage_report_as_json_and_table(cli: Cli, migrated_database_url: str) -> None:

    async def seed() -> None:
        store = await Store.open(migrated_database_url)
        try:
            acme = await store.orgs.create_org("acme")
            when = datetime(2026, 11, 21, 12, tzinfo=UTC)
            await store.usage.insert_usage(
                [
                    UsageRecord(
                        request_id=f"r{n}",
                        model="claude-sonnet-4-5",
                        status=200,
                        created_at=when,
                        org_id=acme.id,
                        input_tokens=1000,
                        output_tokens=100,
                        cost_usd=Decimal("0.0045"),
                    )
                    for n in range(4)
                ]
            )
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, seed()).result()

    result = cli("usage", "--org", "acme", "--since", "2026-11-01", "--group-by", "day", "--json")
    assert result.exit_code == 0, result.output
    (row,) = orjson.loads(result.stdout)
    assert row["group"] == "2026-11-21"
    assert (row["requests"], row["input_tokens"], row["output_tokens"]) == (4, 4000, 400)
    assert Decimal(row["cost_usd"]) == Decimal("0.018")

    assert orjson.loads(cli("usage", "--since", "2026-11-22", "--json").stdout) == []

    table = cli("usage")
    assert table.exit_code == 0, table.output
    assert "claude-sonnet-4-5" in table.stdout
    assert "0.0180" in table.stdout


def test_a_fresh_database_just_works(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first command on a new machine creates the schema itself."""
    monkeypatch.chdir(tmp_path)
    env = {"CLAUDEGATE_DATABASE_URL": database_url}
    with ThreadPoolExecutor(1) as pool:
        created = pool.submit(CliRunner().invoke, app, ["keys", "create", "--org", "acme"], env=env).result()
        assert created.exit_code == 0, created.output
        upgraded = pool.submit(CliRunner().invoke, app, ["db", "upgrade"], env=env).result()
    assert upgraded.exit_code == 0, upgraded.output
    assert "revision 0001 (the newest)" in upgraded.stdout


def test_database_password_is_not_printed(tmp_path: Path) -> None:
    env = {"CLAUDEGATE_DATABASE_URL": "postgresql://app:pw-SECRET@127.0.0.1:1/none"}
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(CliRunner().invoke, app, ["keys", "list"], env=env).result()
    assert result.exit_code == 1
    assert "cannot use the database at postgresql+asyncpg://app:***@127.0.0.1:1/none" in result.stderr
    assert "SECRET" not in result.output
    assert "Traceback" not in result.output


def test_config_file_names_the_database(tmp_path: Path) -> None:
    db = tmp_path / "from-config.db"
    config = tmp_path / "claudegate.toml"
    config.write_text(f'database_url = "sqlite:///{db}"\n')
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(
            CliRunner().invoke,
            app,
            ["keys", "list", "--config", str(config)],
            env={"CLAUDEGATE_DATABASE_URL": None},
        ).result()
    assert result.exit_code == 0, result.output
    assert db.exists()


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "claudegate.toml"
    config.write_text("databse_url = 'x'\n")
    result = CliRunner().invoke(app, ["keys", "list", "--config", str(config)])
    assert result.exit_code == 1
    assert "databse_url: unknown setting" in result.stderr
