"""Usage over time: totals per hour, day or month, split by organisation, user, key or model, filtered.

One query per report, aggregated in the database: with a year of records (a million rows and more) the
reports read the ``(created_at, …)`` and ``(org_id, created_at, …)`` covering indexes of revision 0009
rather than the table, and only the buckets come back to Python. Names (organisations, users, keys) are
joined to the few aggregated rows afterwards, not to every record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from claudegate.store.tables import ApiKey, Organization, UsageRow, User

__all__ = ["Bucket", "SeriesBy", "UsageQuery", "UsageSeriesRow", "usage_series"]


class Bucket(StrEnum):
    """The length of a period in a series (UTC)."""

    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


class SeriesBy(StrEnum):
    """What a series is split by; ``total`` does not split it."""

    TOTAL = "total"
    ORG = "org"
    USER = "user"
    KEY = "key"
    MODEL = "model"


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which records to add up (every filter optional) and how to group them. ``bucket`` None: one total per
    group, over the whole range. ``until`` is exclusive."""

    bucket: Bucket | None = Bucket.DAY
    by: SeriesBy = SeriesBy.TOTAL
    org_id: int | None = None
    user_id: int | None = None
    key_id: int | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class UsageSeriesRow:
    """One period (``period`` None without buckets) of one group (``group`` None for ``total``, and for
    records without that owner or model); ``label`` is the group's name."""

    period: str | None
    group: str | None
    label: str | None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: Decimal
    unpriced_requests: int


class _utc_period(FunctionElement[str]):  # noqa: N801 (SQL function names are lower case)
    """A timestamp's UTC hour (``YYYY-MM-DDTHH``), day (``YYYY-MM-DD``) or month (``YYYY-MM``) as text."""

    type = String()
    inherit_cache = True
    name = "utc_period"


_SQLITE_LENGTHS = {
    Bucket.HOUR: len("YYYY-MM-DD HH"),
    Bucket.DAY: len("YYYY-MM-DD"),
    Bucket.MONTH: len("YYYY-MM"),
}
_POSTGRES_FORMATS = {Bucket.HOUR: 'YYYY-MM-DD"T"HH24', Bucket.DAY: "YYYY-MM-DD", Bucket.MONTH: "YYYY-MM"}


@compiles(_utc_period)
def _utc_period_sqlite(element: _utc_period, compiler: SQLCompiler, **kw: Any) -> str:
    column, unit = element.clauses
    length = _SQLITE_LENGTHS[Bucket(unit.value)]
    # SQLite stores naive UTC text (see UTCDateTime): its first characters are the period itself, and
    # substr is cheaper than strftime over a million rows.
    return f"substr({compiler.process(column, **kw)}, 1, {length})"


@compiles(_utc_period, "postgresql")
def _utc_period_postgresql(element: _utc_period, compiler: SQLCompiler, **kw: Any) -> str:
    column, unit = element.clauses
    fmt = _POSTGRES_FORMATS[Bucket(unit.value)]
    return f"to_char({compiler.process(column, **kw)} AT TIME ZONE 'UTC', '{fmt}')"


def _group_column(by: SeriesBy) -> Any:
    return {
        SeriesBy.TOTAL: None,
        SeriesBy.ORG: UsageRow.org_id,
        SeriesBy.USER: UsageRow.user_id,
        SeriesBy.KEY: UsageRow.key_id,
        SeriesBy.MODEL: UsageRow.model,
    }[by]


async def usage_series(engine: AsyncEngine, query: UsageQuery) -> list[UsageSeriesRow]:
    """The rows of a report, periods in time order and, within one, groups by cost then requests."""
    period = (
        _utc_period(UsageRow.created_at, literal(query.bucket.value)).label("period")
        if query.bucket is not None
        else None
    )
    group = _group_column(query.by)
    errors = case((or_(UsageRow.error_type.is_not(None), UsageRow.status >= 400), 1), else_=0)
    unpriced = case((UsageRow.cost_usd.is_(None), 1), else_=0)
    keys: list[Any] = [column for column in (period, group) if column is not None]
    stmt = select(
        *keys,
        func.count(),
        func.sum(errors),
        func.coalesce(func.sum(UsageRow.input_tokens), 0),
        func.coalesce(func.sum(UsageRow.output_tokens), 0),
        func.coalesce(func.sum(UsageRow.cache_creation_input_tokens), 0),
        func.coalesce(func.sum(UsageRow.cache_read_input_tokens), 0),
        func.sum(UsageRow.cost_usd),
        func.sum(unpriced),
    )
    for column, value in (
        (UsageRow.org_id, query.org_id),
        (UsageRow.user_id, query.user_id),
        (UsageRow.key_id, query.key_id),
        (UsageRow.model, query.model),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if query.since is not None:
        stmt = stmt.where(UsageRow.created_at >= query.since)
    if query.until is not None:
        stmt = stmt.where(UsageRow.created_at < query.until)
    if keys:
        stmt = stmt.group_by(*keys)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
        labels = await _labels(
            conn, query.by, {row[len(keys) - 1] for row in rows} if group is not None else set()
        )
    width = len(keys)
    result = []
    for row in rows:
        group_value = row[width - 1] if group is not None else None
        result.append(
            UsageSeriesRow(
                period=_period_text(row[0]) if period is not None else None,
                group=None if group_value is None else str(group_value),
                label=labels.get(group_value, None if group_value is None else str(group_value)),
                requests=int(row[width]),
                errors=int(row[width + 1] or 0),
                input_tokens=int(row[width + 2]),
                output_tokens=int(row[width + 3]),
                cache_creation_input_tokens=int(row[width + 4]),
                cache_read_input_tokens=int(row[width + 5]),
                cost_usd=_decimal(row[width + 6]),
                unpriced_requests=int(row[width + 7] or 0),
            )
        )
    result.sort(key=lambda r: (r.period or "", -r.cost_usd, -r.requests, r.label or ""))
    return result


def _period_text(value: object) -> str:
    # SQLite's stored text has a space between date and time; show ISO 8601's T on both databases.
    return str(value).replace(" ", "T")


async def _labels(conn: Any, by: SeriesBy, ids: set[Any]) -> dict[Any, str]:
    """Names for the ids in the report: one small query on the primary keys."""
    ids.discard(None)
    if not ids or by in (SeriesBy.TOTAL, SeriesBy.MODEL):
        return {}
    if by is SeriesBy.ORG:
        stmt: Any = select(Organization.id, Organization.name).where(Organization.id.in_(ids))
    elif by is SeriesBy.USER:
        stmt = (
            select(User.id, Organization.name + "/" + User.name)
            .join(Organization, Organization.id == User.org_id)
            .where(User.id.in_(ids))
        )
    else:
        stmt = select(ApiKey.id, ApiKey.name + " (" + ApiKey.key_prefix + "…)").where(ApiKey.id.in_(ids))
    return {row[0]: row[1] for row in (await conn.execute(stmt)).all()}


def _decimal(value: object) -> Decimal:
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    # SQLite sums NUMERIC columns as floats; go through str to keep the printed digits.
    return Decimal(str(value))
