"""Daily totals of usage, kept as records are written, so that reports over months read thousands of rows
rather than millions.

``usage_daily`` holds, per UTC day and organisation, one row per model, one per user and one per key (a
"dimension" and its value). Every record adds to three rows, in the transaction that inserts it, with an
upsert that adds to the row if it exists: concurrent writers (several gateway processes) add, never
overwrite, and take the rows in one order (sorted), so two batches cannot deadlock each other.

A report over whole days that is split or filtered by at most one of model, user and key is answered from
these rows (see :func:`rollup_dimension`); any other report reads the records themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from claudegate.accounting.usage import UsageRecord
from claudegate.store.tables import UsageDaily
from claudegate.store.text import safe_text

__all__ = ["DIMENSIONS", "NO_ORG", "NO_VALUE", "add_to_daily_totals", "is_whole_day"]

DIMENSIONS = ("model", "user", "key")
NO_ORG = 0  # a record without an organisation (refused before its key was known)
NO_VALUE = ""  # a record without that model, user or key
_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cost_usd",
    "unpriced_requests",
)
_KEY = ("dimension", "org_id", "day", "value")
_VALUE_LENGTH = 128  # usage_daily.value, as long as usage_records.model


def _values(record: UsageRecord) -> tuple[tuple[str, str], ...]:
    # The model is client text: stored as the record stores it (no NUL, cut to the column), so a model the
    # record keeps cannot make the totals refuse the batch, and two spellings of one stored model add up.
    return (
        ("model", safe_text(record.model, _VALUE_LENGTH) or NO_VALUE),
        ("user", NO_VALUE if record.user_id is None else str(record.user_id)),
        ("key", NO_VALUE if record.key_id is None else str(record.key_id)),
    )


def daily_deltas(records: Sequence[UsageRecord]) -> list[dict[str, Any]]:
    """What the records add to each daily row, in key order."""
    totals: dict[tuple[str, int, str, str], list[Any]] = {}
    for record in records:
        day = record.created_at.astimezone(UTC).strftime("%Y-%m-%d")
        org = NO_ORG if record.org_id is None else record.org_id
        failed = record.error_type is not None or record.status >= 400
        for dimension, value in _values(record):
            sums = totals.setdefault((dimension, org, day, value), [0, 0, 0, 0, 0, 0, Decimal(0), 0])
            sums[0] += 1
            sums[1] += failed
            usage = record.usage
            sums[2] += usage.input_tokens
            sums[3] += usage.output_tokens
            sums[4] += usage.cache_creation_input_tokens
            sums[5] += usage.cache_read_input_tokens
            if record.cost_usd is None:
                sums[7] += 1
            else:
                sums[6] += record.cost_usd
    return [dict(zip(_KEY + _SUMS, (*key, *sums), strict=True)) for key, sums in sorted(totals.items())]


async def add_to_daily_totals(conn: AsyncConnection, records: Sequence[UsageRecord]) -> None:
    """Add the records to the daily rows, inside the caller's transaction."""
    rows = daily_deltas(records)
    if not rows:
        return
    table: Table = UsageDaily.__table__  # type: ignore[assignment]
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={name: table.c[name] + stmt.excluded[name] for name in _SUMS},
    )
    await conn.execute(stmt, rows)


def is_whole_day(moment: datetime | None) -> bool:
    return moment is None or moment.astimezone(UTC).time() == time(0)
