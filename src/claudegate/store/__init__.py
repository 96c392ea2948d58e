"""claudegate's database: organisations, users, gateway keys, usage records and batch ownership.

SQLAlchemy 2 (async) on SQLite (aiosqlite) by default and PostgreSQL (asyncpg) in production. The schema is
created and upgraded only by the Alembic revisions in ``migrations/``, run from code by
:func:`upgrade_database` (and by :meth:`Store.open`).

Names are imported on first use: SQLAlchemy and Alembic take about half a second to import, which every
``claudegate`` command would otherwise pay just because the CLI mentions a report's ``GroupBy``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claudegate.store._store import Store
    from claudegate.store.migrate import current_revision, head_revision, upgrade_database
    from claudegate.store.rows import (
        AlreadyExistsError,
        BatchOwner,
        BatchPage,
        GroupBy,
        InvalidNameError,
        InvalidSettingError,
        KeyRow,
        NewKey,
        OrgRow,
        StoreError,
        UsageReportRow,
        UserRow,
    )
    from claudegate.store.settings import UNSET, Unset

__all__ = [
    "UNSET",
    "AlreadyExistsError",
    "BatchOwner",
    "BatchPage",
    "GroupBy",
    "InvalidNameError",
    "InvalidSettingError",
    "KeyRow",
    "NewKey",
    "OrgRow",
    "Store",
    "StoreError",
    "Unset",
    "UsageReportRow",
    "UserRow",
    "current_revision",
    "head_revision",
    "upgrade_database",
]

_HOME = {
    "Store": "claudegate.store._store",
    "UNSET": "claudegate.store.settings",
    "Unset": "claudegate.store.settings",
    "current_revision": "claudegate.store.migrate",
    "head_revision": "claudegate.store.migrate",
    "upgrade_database": "claudegate.store.migrate",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'claudegate.store' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME.get(name, "claudegate.store.rows")), name)
