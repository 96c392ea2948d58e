"""Throwaway databases for tests: SQLite files under tmp_path, or fresh PostgreSQL databases created on the
server named by CLAUDEGATE_TEST_POSTGRES_URL and dropped afterwards, so reruns start clean.

Creating and migrating a PostgreSQL database takes a few hundred milliseconds, so tests that want a ready
schema share one database migrated once per session and emptied (TRUNCATE … RESTART IDENTITY) before each
test; on SQLite they get a copy of a file migrated once.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from claudegate.store import upgrade_database
from claudegate.store.tables import Base


async def _execute(server_url: str, statement: str) -> None:
    dsn = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _database_url(server_url: str, name: str) -> str:
    url = make_url(server_url).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


async def create_postgres_database(server_url: str, *, template: str | None = None) -> str:
    """Create a database (empty, or a copy of ``template``) and return its name."""
    name = f"claudegate_test_{secrets.token_hex(6)}"
    copy = f' TEMPLATE "{template}"' if template else ""
    await _execute(server_url, f'CREATE DATABASE "{name}"{copy}')
    return name


async def drop_postgres_database(server_url: str, name: str) -> None:
    await _execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def fresh_postgres_database(server_url: str, *, template: str | None = None) -> AsyncIterator[str]:
    """A database created for the block and dropped after it; yields its URL."""
    name = await create_postgres_database(server_url, template=template)
    try:
        yield _database_url(server_url, name)
    finally:
        await drop_postgres_database(server_url, name)


class MigratedDatabases:
    """Databases migrated once per session (on first use) and handed out empty to each test."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._sqlite: Path | None = None
        self._postgres: tuple[str, str] | None = None  # (server URL, database name)

    async def sqlite(self, path: Path) -> str:
        """A copy of the migrated SQLite template at ``path``."""
        if self._sqlite is None:
            template = self._root / "template.db"
            await upgrade_database(f"sqlite+aiosqlite:///{template}")
            self._sqlite = template
        shutil.copyfile(self._sqlite, path)
        return f"sqlite+aiosqlite:///{path}"

    async def postgres(self, server_url: str) -> str:
        """The session's migrated PostgreSQL database, emptied."""
        if self._postgres is None:
            name = await create_postgres_database(server_url)
            await upgrade_database(_database_url(server_url, name))
            self._postgres = (server_url, name)
        url = _database_url(*self._postgres)
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        await _execute(url, f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        return url

    async def close(self) -> None:
        if self._postgres is not None:
            await drop_postgres_database(*self._postgres)
