"""Revision 0003 (chat, prompts, budgets, act_for_users) on a database written by 0002: the rows stay, the new
settings start at their defaults, and a downgrade takes it all away again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from claudegate.keys import NO_BUDGET, hash_key
from claudegate.store import Store, current_revision, head_revision, upgrade_database
from claudegate.store._engine import create_engine
from claudegate.store.migrate import alembic_config
from tests.integration.test_migrations import _seed_at_0001

CHAT_TABLES = {"prompts", "prompt_versions", "conversations", "chat_messages"}


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrading_from_0002_keeps_the_data_and_adds_defaults(database_url: str) -> None:
    await upgrade_database(database_url, "0001")
    active, _revoked = await _seed_at_0001(database_url)
    await upgrade_database(database_url, "0002")
    assert not (await _tables(database_url)) & CHAT_TABLES
    await upgrade_database(database_url)
    assert await current_revision(database_url) == head_revision()
    assert (await _tables(database_url)) >= CHAT_TABLES

    store = await Store.open(database_url, upgrade=False)
    try:
        found = await store.keys.find_active_key(hash_key(active))
        assert found is not None
        identity = found.identity
        assert (identity.can_act_for_users, identity.settings.org_budget, identity.settings.user_budget) == (
            False,
            NO_BUDGET,
            NO_BUDGET,
        )
        (key, _) = await store.keys.list_keys()
        assert key.act_for_users is False
        org = await store.orgs.get_org("acme")
        assert org is not None
        assert await store.budgets.get(org_id=org.id) == NO_BUDGET
    finally:
        await store.close()


async def test_downgrading_to_0002_drops_the_chat_schema(database_url: str) -> None:
    await upgrade_database(database_url)
    store = await Store.open(database_url, upgrade=False)
    try:
        org = await store.orgs.create_org("acme")
        await store.prompts.create_version(org.id, "support", system="Be kind.")
        await store.budgets.update(org_id=org.id, changes={"daily_tokens": 5})
    finally:
        await store.close()
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:

            def downgrade(sync: Connection) -> None:
                config = alembic_config()
                config.attributes["connection"] = sync
                command.downgrade(config, "0002")

            await conn.run_sync(downgrade)
            columns = await conn.run_sync(
                lambda sync: {column["name"] for column in inspect(sync).get_columns("organizations")}
            )
    finally:
        await engine.dispose()
    assert await current_revision(database_url) == "0002"
    assert not (await _tables(database_url)) & CHAT_TABLES
    assert "budget_daily_tokens" not in columns
    await upgrade_database(database_url)  # and up again
    assert await current_revision(database_url) == head_revision()
