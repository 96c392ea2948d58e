"""``claudegate prompts``, ``claudegate budgets`` and ``keys --act-for-users`` through the real command line,
on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import orjson

from claudegate.keys import BudgetCaps, hash_key
from claudegate.store import Store
from tests.integration.test_cli_store import Cli, cli  # noqa: F401 - the fixture


def test_prompts_lifecycle(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    assert cli("keys", "create", "--org", "acme").exit_code == 0
    text = tmp_path / "system.txt"
    text.write_text("You are a helpful assistant.\n", encoding="utf-8")
    created = cli("prompts", "create", "acme", "support", "--file", str(text), "--note", "first")
    assert created.exit_code == 0, created.output
    assert "Created version 1: prompt 'support', v1 active (latest v1)" in created.output
    second = cli("prompts", "create", "acme", "support", "--text", "Be brief.", "--model", "claude-opus-4-8")
    assert "Created version 2: prompt 'support', v1 active (latest v2)" in second.output
    activated = cli("prompts", "activate", "acme", "support", "2", "--json")
    assert orjson.loads(activated.stdout)["active_version"] == 2
    rolled = cli("prompts", "rollback", "acme", "support")
    assert "Rolled back: prompt 'support', v1 active" in rolled.output
    split = cli("prompts", "split", "acme", "support", "1=25", "2=75")
    assert split.exit_code == 0, split.output
    assert "split v1 25%, v2 75%" in split.output
    listed = cli("prompts", "list", "acme")
    assert "support" in listed.output
    assert "split v1 25%, v2 75%" in listed.output
    shown = cli("prompts", "show", "acme", "support", "--json")
    data = orjson.loads(shown.stdout)
    assert [v["system"] for v in data["versions"]] == ["You are a helpful assistant.\n", "Be brief."]
    assert "Split ended" in cli("prompts", "split", "acme", "support", "--clear").output
    usage = cli("prompts", "usage", "acme", "support", "--json")
    assert [row["version"] for row in orjson.loads(usage.stdout)] == [1, 2]

    for args, message in [
        (("prompts", "create", "acme", "x"), "--text or --file"),
        (("prompts", "create", "nowhere", "x", "--text", "t"), "no organization named 'nowhere'"),
        (("prompts", "activate", "acme", "support", "7"), "has no version 7"),
        (("prompts", "split", "acme", "support", "1=abc"), "expected VERSION=WEIGHT"),
        (("prompts", "show", "acme", "nope"), "no prompt named 'nope'"),
    ]:
        failed = cli(*args)
        assert failed.exit_code == 1, failed.output
        assert message in failed.output


async def test_budgets_set_and_show(cli: Cli, migrated_database_url: str) -> None:  # noqa: F811
    key = orjson.loads(cli("keys", "create", "--org", "acme", "--user", "alice", "--json").stdout)["key"]
    changed = cli("budgets", "set", "acme", "--daily-tokens", "50000", "--monthly-usd", "12.5")
    assert changed.exit_code == 0, changed.output
    assert "tokens per day     50,000" in changed.output
    assert "dollars per month  $12.50" in changed.output
    user = cli("budgets", "set", "acme", "--user", "alice", "--daily-usd", "2", "--json")
    assert orjson.loads(user.stdout)["daily_usd"] == 2.0
    shown = orjson.loads(cli("budgets", "show", "acme", "--json").stdout)
    assert (shown["daily_tokens"], shown["monthly_usd"], shown["spent"]["today"]["tokens"]) == (
        50_000,
        12.5,
        0,
    )
    store = await Store.open(migrated_database_url, upgrade=False)
    try:
        found = await store.keys.find_active_key(hash_key(key))
        assert found is not None
        assert found.identity.settings.org_budget == BudgetCaps(daily_tokens=50_000, monthly_usd=12.5)
        assert found.identity.settings.user_budget == BudgetCaps(daily_usd=2.0)
    finally:
        await store.close()
    cleared = orjson.loads(cli("budgets", "set", "acme", "--daily-tokens", "none", "--json").stdout)
    assert cleared["daily_tokens"] is None
    for args, message in [
        (("budgets", "set", "acme", "--daily-tokens", "lots"), "--daily-tokens: expected a whole number"),
        (("budgets", "set", "acme", "--monthly-usd", "-3"), "--monthly-usd: must be a positive number"),
        (("budgets", "show", "acme", "--user", "bob"), "no user named 'bob'"),
    ]:
        failed = cli(*args)
        assert failed.exit_code == 1, failed.output
        assert message in failed.output


def test_keys_may_act_for_end_users(cli: Cli) -> None:  # noqa: F811
    created = orjson.loads(cli("keys", "create", "--org", "acme", "--act-for-users", "yes", "--json").stdout)
    assert created["act_for_users"] is True
    shown = cli("keys", "limits", str(created["id"]), "--act-for-users", "no")
    assert "acts for end users   no" in shown.output
    bad = cli("keys", "limits", str(created["id"]), "--act-for-users", "maybe")
    assert bad.exit_code == 1
    assert "--act-for-users: expected yes or no" in bad.output
