"""The schema is created and upgraded only by Alembic, from code, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, make_url

from claudegate.store import current_revision, head_revision, upgrade_database
from claudegate.store._engine import create_engine
from claudegate.store.tables import Base

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
