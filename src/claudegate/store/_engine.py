"""Creating the async engine, with the per-database settings claudegate relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from claudegate.config import normalize_database_url

__all__ = ["create_engine", "is_sqlite"]


def is_sqlite(url: str) -> bool:
    return normalize_database_url(url).startswith("sqlite")


def create_engine(url: str) -> AsyncEngine:
    """An engine for ``url`` (plain ``postgresql://`` and ``sqlite://`` get their async drivers)."""
    url = normalize_database_url(url)
    if is_sqlite(url):
        _make_parent_directory(url)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pre_ping lets the pool notice a PostgreSQL restart instead of failing the next query with it.
    return create_async_engine(url, pool_pre_ping=True)


def _make_parent_directory(url: str) -> None:
    """Create the directory of a SQLite file (the data directory, on first use)."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout first: switching to WAL takes a lock too, and several processes opening a new database at
    # once would otherwise fail on it. WAL lets key lookups read while usage is written.
    for pragma in (
        "PRAGMA busy_timeout=10000",
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
    ):
        cursor.execute(pragma)
    cursor.close()
