"""Usage over time: totals per hour, day or month, split by organisation, user, key or model, filtered.

One query per report, aggregated in the database. A report over whole days, split or filtered by at most one
of model, user and key, adds up the daily totals (``usage_daily.py``: thousands of rows for a year) instead
of the records (millions); any other report (per hour, or from a time of day) reads the records in its
time range through the ``created_at`` indexes. Names (organisations, users, keys) are joined to the few
aggregated rows afterwards, not to every record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, false, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from claudegate.store.rows import Bucket, SeriesBy
from claudegate.store.tables import ApiKey, Organization, UsageDaily, UsageRow, User
from claudegate.store.usage_daily import NO_ORG, NO_VALUE, is_whole_day

__all__ = [
    "OTHER",
    "Bucket",
    "SeriesBy",
    "UsageQuery",
    "UsageSeriesRow",
    "rollup_dimension",
    "series_json",
    "usage_series",
]


OTHER = "other"  # the group that holds every group beyond a report's ``top``
# What the folded groups are called inside a query: no id is negative, no model name starts with \x1f.
_OTHER_ID = -1
_OTHER_TEXT = "\x1fother"


class _Other:
    """The marker of the folded groups among a query's group values."""


_FOLDED = _Other()


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
    top: int | None = None  # keep this many groups (the costliest over the range), the rest as one "other"


@dataclass(frozen=True, slots=True)
class UsageSeriesRow:
    """One period (``period`` None without buckets) of one group (``group`` None for ``total``, and for
    records without that owner or model; ``OTHER`` for the groups beyond ``top``); ``label`` is the group's
    name."""

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


def series_json(row: UsageSeriesRow) -> dict[str, Any]:
    """One report row as the admin API and ``claudegate usage --json`` show it; the cost as an exact decimal
    string."""
    return {
        "period": row.period,
        "group": row.group,
        "label": row.label,
        "requests": row.requests,
        "errors": row.errors,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cache_creation_input_tokens": row.cache_creation_input_tokens,
        "cache_read_input_tokens": row.cache_read_input_tokens,
        "cost_usd": format(row.cost_usd.normalize(), "f"),
        "unpriced_requests": row.unpriced_requests,
    }


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


def rollup_dimension(query: UsageQuery) -> str | None:
    """Which daily totals answer the query (model, user or key), or None when only the records can."""
    if query.bucket is Bucket.HOUR or not (is_whole_day(query.since) and is_whole_day(query.until)):
        return None
    filtered = {
        name
        for name, value in (("model", query.model), ("user", query.user_id), ("key", query.key_id))
        if value is not None
    }
    if query.by in (SeriesBy.MODEL, SeriesBy.USER, SeriesBy.KEY):
        return query.by.value if filtered <= {query.by.value} else None
    if len(filtered) > 1:
        return None
    return filtered.pop() if filtered else "model"


async def usage_series(engine: AsyncEngine, query: UsageQuery) -> list[UsageSeriesRow]:
    """The rows of a report, periods in time order and, within one, groups by cost then requests."""
    dimension = rollup_dimension(query)
    if dimension is not None:
        return await _from_daily_totals(engine, query, dimension)
    period = (
        _utc_period(UsageRow.created_at, literal(query.bucket.value)).label("period")
        if query.bucket is not None
        else None
    )
    group = _group_column(query.by)
    where: list[Any] = []
    for column, value in (
        (UsageRow.org_id, query.org_id),
        (UsageRow.user_id, query.user_id),
        (UsageRow.key_id, query.key_id),
        (UsageRow.model, query.model),
    ):
        if value is not None:
            where.append(column == value)
    if query.since is not None:
        where.append(UsageRow.created_at >= query.since)
    if query.until is not None:
        where.append(UsageRow.created_at < query.until)
    errors = case((or_(UsageRow.error_type.is_not(None), UsageRow.status >= 400), 1), else_=0)
    unpriced = case((UsageRow.cost_usd.is_(None), 1), else_=0)
    async with engine.connect() as conn:
        sentinel = _OTHER_TEXT if query.by is SeriesBy.MODEL else _OTHER_ID
        if group is not None and query.top is not None:
            rank = (func.sum(UsageRow.cost_usd), func.count())
            group = await _folded(conn, group, where, rank, top=query.top, sentinel=sentinel)
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
        ).where(*where)
        if keys:
            stmt = stmt.group_by(*keys)
        rows = (await conn.execute(stmt)).all()
        groups = (
            [_FOLDED if row[len(keys) - 1] == sentinel else row[len(keys) - 1] for row in rows]
            if group is not None
            else None
        )
        labels = await _labels(conn, query.by, set(groups or ()))
    return _rows(rows, period is not None, groups, labels)


async def _folded(
    conn: Any, group: Any, where: list[Any], rank: tuple[Any, ...], *, top: int, sentinel: object
) -> Any:
    """The group column with every group but the ``top`` costliest (over the whole range) replaced by
    ``sentinel``: one extra query, and a report of ``top + 1`` groups however many there are."""
    ranked = select(group).where(*where).group_by(group).order_by(*(term.desc() for term in rank)).limit(top)
    kept = [row[0] for row in (await conn.execute(ranked)).all()]
    present = [value for value in kept if value is not None]
    match: Any = group.in_(present) if present else false()
    if None in kept:
        match = or_(match, group.is_(None))
    return case((match, group), else_=literal(sentinel))


def _rows(
    rows: Sequence[Any], has_period: bool, groups: list[Any] | None, labels: dict[Any, str]
) -> list[UsageSeriesRow]:
    """Report rows from query rows: (period?, group?, eight sums), in time order then by cost."""
    width = int(has_period) + int(groups is not None)
    result = []
    for n, row in enumerate(rows):
        group_value = groups[n] if groups is not None else None
        group: str | None
        label: str | None
        if group_value is _FOLDED:
            group, label = OTHER, "(all others)"
        else:
            group = None if group_value is None else str(group_value)
            label = labels.get(group_value, group)
        result.append(
            UsageSeriesRow(
                period=_period_text(row[0]) if has_period else None,
                group=group,
                label=label,
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


async def _from_daily_totals(engine: AsyncEngine, query: UsageQuery, dimension: str) -> list[UsageSeriesRow]:
    day = UsageDaily.day
    period: Any = None
    if query.bucket is Bucket.DAY:
        period = day
    elif query.bucket is Bucket.MONTH:
        period = func.substr(day, 1, len("YYYY-MM"))
    group: Any = None
    if query.by is SeriesBy.ORG:
        group = UsageDaily.org_id
    elif query.by is not SeriesBy.TOTAL:
        group = UsageDaily.value
    where: list[Any] = [UsageDaily.dimension == dimension]
    if query.org_id is not None:
        where.append(UsageDaily.org_id == query.org_id)
    value = {"model": query.model, "user": query.user_id, "key": query.key_id}[dimension]
    if value is not None:
        where.append(UsageDaily.value == str(value))
    if query.since is not None:
        where.append(day >= query.since.astimezone(UTC).strftime("%Y-%m-%d"))
    if query.until is not None:
        where.append(day < query.until.astimezone(UTC).strftime("%Y-%m-%d"))
    async with engine.connect() as conn:
        sentinel = _OTHER_ID if query.by is SeriesBy.ORG else _OTHER_TEXT
        if group is not None and query.top is not None:
            rank = (func.sum(UsageDaily.cost_usd), func.sum(UsageDaily.requests))
            group = await _folded(conn, group, where, rank, top=query.top, sentinel=sentinel)
        keys: list[Any] = [column for column in (period, group) if column is not None]
        stmt = select(
            *keys,
            func.sum(UsageDaily.requests),
            func.sum(UsageDaily.errors),
            func.sum(UsageDaily.input_tokens),
            func.sum(UsageDaily.output_tokens),
            func.sum(UsageDaily.cache_creation_input_tokens),
            func.sum(UsageDaily.cache_read_input_tokens),
            func.sum(UsageDaily.cost_usd),
            func.sum(UsageDaily.unpriced_requests),
        ).where(*where)
        if keys:
            stmt = stmt.group_by(*keys)
        rows = (await conn.execute(stmt)).all()
        ids = (
            [
                _FOLDED if row[len(keys) - 1] == sentinel else _stored_group(query.by, row[len(keys) - 1])
                for row in rows
            ]
            if group is not None
            else []
        )
        labels = await _labels(conn, query.by, set(ids))
    return _rows(rows, period is not None, ids if group is not None else None, labels)


def _stored_group(by: SeriesBy, value: Any) -> Any:
    """A daily row's group as the records hold it: None for none, ids as numbers."""
    if by is SeriesBy.ORG:
        return None if value == NO_ORG else value
    if value == NO_VALUE:
        return None
    return int(value) if by in (SeriesBy.USER, SeriesBy.KEY) else value


def _period_text(value: object) -> str:
    # SQLite's stored text has a space between date and time; show ISO 8601's T on both databases.
    return str(value).replace(" ", "T")


async def _labels(conn: Any, by: SeriesBy, ids: set[Any]) -> dict[Any, str]:
    """Names for the ids in the report: one small query on the primary keys."""
    ids.discard(None)
    ids.discard(_FOLDED)
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
