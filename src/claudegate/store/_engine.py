"""Creating the async engine, with the per-database settings claudegate relies on."""

from __future__ import annotations

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
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pre_ping lets the pool notice a PostgreSQL restart instead of failing the next query with it.
    return create_async_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets key lookups read while usage is written; busy_timeout waits for a lock instead of failing.
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=10000",
    ):
        cursor.execute(pragma)
    cursor.close()
