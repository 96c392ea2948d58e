"""Creating and upgrading the schema with Alembic, from code: no ``alembic.ini`` is needed at run time.

Several gateway processes may start at once against one database, so the upgrade runs under a lock:
a transaction-scoped advisory lock on PostgreSQL, an immediate (write-locking) transaction on SQLite.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from claudegate.store._engine import create_engine

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD_REVISION", "alembic_config", "current_revision", "head_revision", "upgrade_database"]

# The newest migration (a test holds it to Alembic's own answer). Every start upgrades the database, which
# is nearly always current already: knowing the head without Alembic lets that check skip importing Alembic,
# about a tenth of an idle gateway's memory. Alembic is imported only when there is something to migrate.
HEAD_REVISION = "0012"

# An arbitrary constant naming claudegate's migration lock among PostgreSQL advisory locks.
_PG_LOCK_ID = 0x6367_6D69  # "cgmi"
_SQLITE_ATTEMPTS = 5


def alembic_config() -> Config:
    """An Alembic configuration pointing at the migrations shipped inside the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "claudegate.store:migrations")
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The newest revision this version of claudegate knows, as Alembic reads it from the migrations."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("claudegate ships no migrations")
    return head


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Create the schema, or bring it up to ``revision``. Cheap when it is already current.

    Several processes may start at once: PostgreSQL serialises them with an advisory lock, SQLite with an
    immediate transaction; a SQLite database still busy past its timeout (a slow disk, a loaded machine) is
    tried again a few times before the error is let through.
    """
    for attempt in range(_SQLITE_ATTEMPTS):
        try:
            await _upgrade_once(url, revision)
            return
        except OperationalError as error:
            if "database is locked" not in str(error) or attempt == _SQLITE_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.2 * 2**attempt)


async def _upgrade_once(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                await connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await connection.begin()
                await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
            await connection.run_sync(_upgrade, revision)
            await connection.commit()
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database is at, or None if it has no claudegate schema yet."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    if _stamped(connection) == (HEAD_REVISION if revision == "head" else revision):
        return  # already there
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _stamped(connection: Connection) -> str | None:
    """The revision Alembic recorded in the database (None if none, or if it records several)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return versions[0] if len(versions) == 1 else None


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
