"""The schema is created and upgraded only by Alembic, from code, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, update
from sqlalchemy.engine import Connection, make_url

from claudegate.accounting.usage import UsageRecord
from claudegate.keys import UNLIMITED_TENANT, LimitSet, generate_key, hash_key
from claudegate.store import GroupBy, Store, current_revision, head_revision, upgrade_database
from claudegate.store._engine import create_engine
from claudegate.store.migrate import HEAD_REVISION, alembic_config
from claudegate.store.tables import ApiKey, Base, Organization, UsageRow, User

REPO = Path(__file__).resolve().parents[2]
TABLES = {"organizations", "users", "api_keys", "usage_records", "message_batches", "alembic_version"}


async def test_upgrade_creates_the_schema_at_the_newest_revision(database_url: str) -> None:
    assert await current_revision(database_url) is None
    await upgrade_database(database_url)
    assert await current_revision(database_url) == head_revision()
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            indexes = await conn.run_sync(
                lambda sync: {ix["name"] for ix in inspect(sync).get_indexes("usage_records")}
            )
    finally:
        await engine.dispose()
    assert names >= TABLES
    assert "ix_usage_records_org_id_created_at" in indexes


async def test_upgrading_a_current_database_changes_nothing(database_url: str) -> None:
    await upgrade_database(database_url)
    await upgrade_database(database_url)
    assert await current_revision(database_url) == head_revision()


def test_the_head_revision_the_gateway_checks_at_start_is_alembics() -> None:
    """Starting skips Alembic when the database is at HEAD_REVISION: a new migration must move it."""
    assert head_revision() == HEAD_REVISION


def test_a_gateway_starting_on_a_current_database_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'current.db'}"
    asyncio.run(upgrade_database(url))
    script = (
        "import asyncio, sys\n"
        "from claudegate.store import upgrade_database\n"
        f"asyncio.run(upgrade_database({url!r}))\n"
        "print(any(name.split('.')[0] == 'alembic' for name in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


async def test_gateways_starting_together_upgrade_once(database_url: str) -> None:
    await asyncio.gather(*(upgrade_database(database_url) for _ in range(3)))
    assert await current_revision(database_url) == head_revision()


async def test_models_match_the_migrations(database_url: str) -> None:
    """The ORM models and the migrations describe the same schema (no drift for the next revision)."""
    await upgrade_database(database_url)

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(differences)
    finally:
        await engine.dispose()
    assert diff == []


SETTINGS_COLUMNS = {
    "organizations": {"requests_per_minute", "tokens_per_minute", "max_concurrency", "weight"},
    "users": {"requests_per_minute", "tokens_per_minute", "max_concurrency", "weight"},
    "api_keys": {"requests_per_minute", "tokens_per_minute", "max_concurrency", "deadline_ms", "priority"},
}


async def _columns(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: {
                    table: {column["name"] for column in inspect(sync).get_columns(table)}
                    for table in SETTINGS_COLUMNS
                }
            )
    finally:
        await engine.dispose()


async def _seed_at_0001(url: str) -> tuple[str, str]:
    """Rows as claudegate 0001 wrote them: an organisation, a user, an active and a revoked key, usage.
    Only 0001's columns are named, so the inserts work on that schema. Returns the two keys."""
    active, revoked = generate_key(), generate_key()
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            org_id = (
                await conn.execute(
                    insert(Organization).values(name="acme", created_at=now).returning(Organization.id)
                )
            ).scalar_one()
            user_id = (
                await conn.execute(
                    insert(User).values(org_id=org_id, name="alice", created_at=now).returning(User.id)
                )
            ).scalar_one()
            for key, revoked_at in ((active, None), (revoked, now)):
                await conn.execute(
                    insert(ApiKey).values(
                        org_id=org_id,
                        user_id=user_id,
                        name="laptop",
                        key_prefix=key[:10],
                        key_hash=hash_key(key),
                        created_at=now,
                        revoked_at=revoked_at,
                    )
                )
            await conn.execute(
                insert(UsageRow).values(
                    created_at=now,
                    request_id="r1",
                    org_id=org_id,
                    user_id=user_id,
                    status=200,
                    input_tokens=10,
                    latency_ms=12.5,
                )
            )
    finally:
        await engine.dispose()
    return active, revoked


async def test_upgrading_from_0001_keeps_the_data_and_adds_default_settings(database_url: str) -> None:
    await upgrade_database(database_url, "0001")
    assert all(
        not (columns & SETTINGS_COLUMNS[table]) for table, columns in (await _columns(database_url)).items()
    )
    active, revoked = await _seed_at_0001(database_url)

    await upgrade_database(database_url)
    assert await current_revision(database_url) == head_revision() == "0012"
    assert all(
        columns >= SETTINGS_COLUMNS[table] for table, columns in (await _columns(database_url)).items()
    )

    store = await Store.open(database_url, upgrade=False)
    try:
        (org,) = await store.orgs.list_orgs()
        assert (org.name, org.limits, org.weight) == ("acme", LimitSet(), None)
        (user,) = await store.orgs.list_users(org.id)
        assert (user.name, user.limits, user.weight) == ("alice", LimitSet(), None)
        keys = await store.keys.list_keys()
        assert [(key.active, key.limits, key.deadline_ms, key.priority) for key in keys] == [
            (True, LimitSet(), None, None),
            (False, LimitSet(), None, None),
        ]
        found = await store.keys.find_active_key(hash_key(active))
        assert found is not None
        assert (found.identity.org_name, found.identity.user_name) == ("acme", "alice")
        assert found.identity.settings == UNLIMITED_TENANT
        assert await store.keys.find_active_key(hash_key(revoked)) is None
        (usage,) = await store.usage.report(group_by=GroupBy.USER)
        assert (usage.group, usage.requests, usage.input_tokens) == ("alice", 1, 10)
        async with store.engine.connect() as conn:
            apis = (await conn.execute(select(UsageRow.api))).scalars().all()
        assert apis == ["anthropic"]  # every record made before the column existed came through /v1/messages

        # The new columns take settings, and the rows written before keep working with them.
        await store.orgs.update_org_settings(org.id, requests_per_minute=100, weight=2)
        await store.keys.update_key_settings(keys[0].id, priority=3)
        await store.usage.insert_usage(
            [UsageRecord(request_id="r2", model=None, status=200, org_id=org.id, key_id=keys[0].id)]
        )
        found = await store.keys.find_active_key(hash_key(active))
        assert found is not None
        settings = found.identity.settings
        assert (settings.org.requests_per_minute, settings.org_weight, settings.priority) == (100, 2.0, 3)
    finally:
        await store.close()


async def test_downgrading_to_0001_drops_the_settings_and_keeps_the_rows(database_url: str) -> None:
    await upgrade_database(database_url, "0001")
    active, _revoked = await _seed_at_0001(database_url)
    await upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(Organization).values(requests_per_minute=5, weight=2.0))
            await conn.execute(update(ApiKey).values(priority=1))

            def downgrade(sync: Connection) -> None:
                config = alembic_config()
                config.attributes["connection"] = sync
                command.downgrade(config, "0001")

            await conn.run_sync(downgrade)
    finally:
        await engine.dispose()
    assert await current_revision(database_url) == "0001"
    assert all(
        not (columns & SETTINGS_COLUMNS[table]) for table, columns in (await _columns(database_url)).items()
    )

    await upgrade_database(database_url)  # and back up again: the settings start over at their defaults
    store = await Store.open(database_url, upgrade=False)
    try:
        assert [key.priority for key in await store.keys.list_keys()] == [None, None]
        found = await store.keys.find_active_key(hash_key(active))
        assert found is not None
        assert found.identity.settings == UNLIMITED_TENANT
    finally:
        await store.close()


@pytest.mark.postgres
async def test_plain_postgresql_urls_work(postgres_url: str) -> None:
    from tests.databases import fresh_postgres_database

    async with fresh_postgres_database(postgres_url) as url:
        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        assert plain.startswith("postgresql://")
        await upgrade_database(plain)
        assert await current_revision(plain) == head_revision()


def test_the_wheel_ships_the_migrations_and_they_run_from_it(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("claudegate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {
            "claudegate/store/migrations/env.py",
            "claudegate/store/migrations/script.py.mako",
            "claudegate/store/migrations/versions/0001_initial.py",
            "claudegate/store/migrations/versions/0002_tenant_settings.py",
            "claudegate/store/migrations/versions/0003_chat.py",
            "claudegate/store/migrations/versions/0004_batch_accounting.py",
            "claudegate/store/migrations/versions/0005_batch_upstream.py",
            "claudegate/store/migrations/versions/0006_usage_details.py",
            "claudegate/store/migrations/versions/0007_files_and_attribution.py",
            "claudegate/store/migrations/versions/0008_usage_api.py",
            "claudegate/store/migrations/versions/0009_policy_loop.py",
            "claudegate/store/migrations/versions/0010_cached_usage.py",
            "claudegate/store/migrations/versions/0011_usage_daily.py",
            "claudegate/console/static/index.html",
            "claudegate/console/static/console.js",
            "claudegate/console/static/console.css",
            "claudegate/store/migrations/versions/0012_key_cache.py",
            "claudegate/data/prices.toml",
        } <= names
        archive.extractall(tmp_path / "installed")
    script = (
        "import asyncio, claudegate.store as s; print(s.__file__); "
        f"asyncio.run(s.upgrade_database('sqlite:///{tmp_path / 'fresh.db'}'))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "installed")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    )
    assert done.stdout.startswith(str(tmp_path / "installed"))
    assert (tmp_path / "fresh.db").exists()
