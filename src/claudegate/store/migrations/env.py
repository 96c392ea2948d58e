"""Alembic environment for claudegate's schema.

claudegate runs migrations itself (``claudegate.store.upgrade_database``), handing this script an open
connection in ``config.attributes["connection"]``. For writing a new revision by hand, this script also
accepts a URL (``-x url=sqlite+aiosqlite:///dev.db`` or the ``sqlalchemy.url`` option) and connects itself.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from claudegate.config import normalize_database_url
from claudegate.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_async_engine(normalize_database_url(url))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give a database: alembic -x url=sqlite+aiosqlite:///dev.db …")
    asyncio.run(_run_with_own_engine(url))


if context.is_offline_mode():
    raise SystemExit("claudegate migrations run online only (against a database)")
main()
