"""Fixtures for the store's integration tests: every such test runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claudegate.store import Store
from tests.databases import MigratedDatabases, fresh_postgres_database

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
async def migrated_databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MigratedDatabases]:
    databases = MigratedDatabases(tmp_path_factory.mktemp("migrated"))
    try:
        yield databases
    finally:
        await databases.close()


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database (no schema): a SQLite file, or a PostgreSQL database made for this test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'claudegate.db'}"
        return
    async with fresh_postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
async def migrated_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_databases: MigratedDatabases
) -> str:
    """A database with the current schema and no rows."""
    if request.param == "sqlite":
        return await migrated_databases.sqlite(tmp_path / "claudegate.db")
    return await migrated_databases.postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(migrated_database_url: str) -> AsyncIterator[Store]:
    """A store on a migrated, empty database."""
    opened = await Store.open(migrated_database_url, upgrade=False)
    try:
        yield opened
    finally:
        await opened.close()
