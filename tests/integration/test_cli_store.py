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
from claudegate.keys import LimitSet, TenantSettings, hash_key
from claudegate.store import Store, head_revision
from claudegate.wire.usage_tap import Usage

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


def _settings_of(url: str, key: str) -> TenantSettings | None:
    """What a gateway would resolve ``key`` to now, read through the store in a loop of its own."""

    async def read() -> TenantSettings | None:
        store = await Store.open(url, upgrade=False)
        try:
            found = await store.keys.find_active_key(hash_key(key))
            return None if found is None else found.identity.settings
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def test_key_limits_round_trip(cli: Cli, migrated_database_url: str) -> None:
    created = cli(
        "keys",
        "create",
        "--org",
        "acme",
        "--user",
        "alice",
        "--rpm",
        "120",
        "--tpm",
        "80000",
        "--concurrency",
        "4",
        "--deadline-ms",
        "30000",
        "--priority",
        "-2",
        "--json",
    )
    assert created.exit_code == 0, created.output
    key = orjson.loads(created.stdout)
    assert (key["requests_per_minute"], key["tokens_per_minute"], key["max_concurrency"]) == (120, 80000, 4)
    assert (key["deadline_ms"], key["priority"]) == (30000, -2)

    table = cli("keys", "list")
    assert table.exit_code == 0, table.output
    (line,) = [line for line in table.stdout.splitlines() if key["prefix"] in line]
    assert re.search(r"│ +120 │ +80k │ +4 │ +30,000 │ +-2 │", line), line

    changed = cli("keys", "limits", str(key["id"]), "--rpm", "none", "--tpm", "90000", "--priority", "3")
    assert changed.exit_code == 0, changed.output
    assert f"Updated key {key['id']}" in changed.stdout
    assert re.search(r"requests per minute\s+no limit", changed.stdout)
    assert re.search(r"tokens per minute\s+90,000", changed.stdout)
    assert re.search(r"concurrent calls\s+4", changed.stdout)
    assert re.search(r"default deadline\s+30,000 ms", changed.stdout)
    assert re.search(r"priority\s+3", changed.stdout)

    cleared = cli(
        "keys", "limits", str(key["id"]), "--deadline-ms", "none", "--concurrency", "NONE", "--json"
    )
    assert cleared.exit_code == 0, cleared.output
    row = orjson.loads(cleared.stdout)
    assert (row["requests_per_minute"], row["tokens_per_minute"], row["max_concurrency"]) == (
        None,
        90000,
        None,
    )
    assert (row["deadline_ms"], row["priority"]) == (None, 3)
    assert orjson.loads(cli("keys", "list", "--json").stdout) == [row]

    shown = cli("keys", "limits", str(key["id"]))
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"Key {key['id']}")
    assert re.search(r"default deadline\s+none", shown.stdout)

    settings = _settings_of(migrated_database_url, key["key"])
    assert settings is not None
    assert settings.key == LimitSet(tokens_per_minute=90000)
    assert (settings.deadline_ms, settings.priority) == (None, 3)


def test_organization_and_user_limits_round_trip(cli: Cli, migrated_database_url: str) -> None:
    key = orjson.loads(cli("keys", "create", "--org", "acme", "--user", "alice", "--json").stdout)

    org = cli("orgs", "limits", "acme", "--rpm", "600", "--concurrency", "20", "--weight", "2.5")
    assert org.exit_code == 0, org.output
    assert "Updated org acme" in org.stdout
    assert re.search(r"requests per minute\s+600", org.stdout)
    assert re.search(r"tokens per minute\s+no limit", org.stdout)
    assert re.search(r"weight\s+2.5", org.stdout)

    user = cli("orgs", "limits", "acme", "--user", "alice", "--tpm", "10000", "--weight", "0.5", "--json")
    assert user.exit_code == 0, user.output
    data = orjson.loads(user.stdout)
    assert (data["org"], data["name"], data["tokens_per_minute"], data["weight"]) == (
        "acme",
        "alice",
        10000,
        0.5,
    )

    settings = _settings_of(migrated_database_url, key["key"])
    assert settings is not None
    assert settings.org == LimitSet(requests_per_minute=600, max_concurrency=20)
    assert settings.user == LimitSet(tokens_per_minute=10000)
    assert (settings.org_weight, settings.user_weight) == (2.5, 0.5)

    cleared = cli("orgs", "limits", "acme", "--rpm", "none", "--weight", "none", "--json")
    assert cleared.exit_code == 0, cleared.output
    data = orjson.loads(cleared.stdout)
    assert (data["requests_per_minute"], data["max_concurrency"], data["weight"]) == (None, 20, None)
    shown = cli("orgs", "limits", "acme")
    assert shown.exit_code == 0, shown.output
    assert "Settings of org acme" in shown.stdout
    assert re.search(r"weight\s+1 \(default\)", shown.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "limits", "1", "--rpm", "0"), "--rpm: must be a whole number from 1 to 2147483647; got 0"),
        (("keys", "limits", "1", "--tpm", "lots"), "--tpm: expected a whole number or 'none', got 'lots'"),
        (("keys", "limits", "1", "--concurrency", "2.5"), "--concurrency: expected a whole number"),
        (("keys", "limits", "1", "--deadline-ms", "-100"), "--deadline-ms: must be a whole number from 1"),
        (("keys", "limits", "1", "--priority", "high"), "--priority: expected a whole number"),
        (("keys", "limits", "4242", "--rpm", "5"), "no key with id 4242"),
        (("keys", "create", "--org", "newco", "--rpm", "-1"), "--rpm: must be a whole number"),
        (
            ("orgs", "limits", "acme", "--weight", "0"),
            "--weight: must be a number from 0.000001 to 1000000; got 0",
        ),
        (
            ("orgs", "limits", "acme", "--weight", "heavy"),
            "--weight: expected a number or 'none', got 'heavy'",
        ),
        (("orgs", "limits", "nobody", "--rpm", "5"), "no organization named 'nobody'"),
        (
            ("orgs", "limits", "acme", "--user", "bob", "--rpm", "5"),
            "no user named 'bob' in organization 'acme'",
        ),
    ],
)
def test_limit_mistakes_get_one_clear_line_and_a_nonzero_exit(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    assert cli("keys", "create", "--org", "acme", "--user", "alice").exit_code == 0
    result = cli(*args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    (row,) = orjson.loads(cli("keys", "list", "--json").stdout)
    assert (row["org"], row["requests_per_minute"], row["priority"]) == (
        "acme",
        None,
        None,
    )  # nothing changed
    assert "no organization named 'newco'" in cli("keys", "list", "--org", "newco").stderr


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
                        usage=Usage(input_tokens=1000, output_tokens=100),
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

    # Per period and split, with the query the admin API and the web console use.
    series = cli("usage", "--org", "acme", "--per", "month", "--by", "model", "--json")
    assert series.exit_code == 0, series.output
    (month,) = orjson.loads(series.stdout)
    assert (month["period"], month["group"], month["requests"]) == ("2026-11", "claude-sonnet-4-5", 4)
    assert Decimal(month["cost_usd"]) == Decimal("0.018")
    hours = cli("usage", "--per", "hour", "--until", "2026-11-21T12:00:00Z")
    assert hours.exit_code == 0, hours.output
    assert "0.0180" not in hours.stdout  # every record is at 12:00, the end is exclusive


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
    assert f"revision {head_revision()} (the newest)" in upgraded.stdout


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
