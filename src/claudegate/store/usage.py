"""Usage records: written in bulk by the UsageWriter, read back as grouped reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    Select,
    SQLColumnExpression,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.accounting.usage import UsageRecord, UsageRejectedError
from claudegate.store._types import utc_day
from claudegate.store.rows import GroupBy, UsageReportRow
from claudegate.store.tables import ApiKey, Organization, UsageRow, User
from claudegate.store.text import safe_row
from claudegate.store.usage_daily import add_to_daily_totals
from claudegate.store.usage_series import UsageQuery, UsageSeriesRow, usage_series

__all__ = ["UsageRepository"]

_USAGE_TABLE = cast("Table", UsageRow.__table__)
# SQLSTATE classes of errors caused by the values sent, not by the database's state: data exceptions (22)
# and integrity constraint violations (23).
_REJECTING_SQLSTATES = ("22", "23")


def _rejects_content(error: Exception) -> bool:
    """Whether the database (or the driver, binding a value) refused the records for what they hold."""
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate[:2] in _REJECTING_SQLSTATES
        # SQLite has no SQLSTATE: its integrity and data errors are the driver's exception classes.
        return type(error.orig).__name__ in ("IntegrityError", "DataError")
    # A value the driver could not convert before sending anything (a wrong type, an int too large).
    return isinstance(error, StatementError | ValueError | OverflowError | TypeError)


class UsageRepository:
    """Implements :class:`claudegate.accounting.usage.UsageSink` for the UsageWriter."""

    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        """Insert the records in one transaction with what they add to the daily totals
        (``usage_daily.py``), and move each key's ``last_used_at`` forward.

        Keeping ``last_used_at`` here, in the batched write, means the request path never writes to the
        database just to note that a key was used.
        """
        if not records:
            return
        rows = [safe_row(_USAGE_TABLE, record.row()) for record in records]
        last_used: dict[int, datetime] = {}
        for record in records:
            if record.key_id is not None:
                seen = last_used.get(record.key_id)
                if seen is None or record.created_at > seen:
                    last_used[record.key_id] = record.created_at
        touch = (
            update(ApiKey)
            .where(
                ApiKey.id == bindparam("touched_id"),
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < bindparam("used_at")),
            )
            .values(last_used_at=bindparam("used_at"))
        )
        try:
            async with self._engine.begin() as conn:
                # The Core table, not the ORM entity: a bulk insert of plain rows costs a third less CPU.
                await conn.execute(insert(_USAGE_TABLE), rows)
                await add_to_daily_totals(conn, records)
                if last_used:
                    await conn.execute(
                        touch,
                        [{"touched_id": key, "used_at": when} for key, when in sorted(last_used.items())],
                    )
        except Exception as error:
            if _rejects_content(error):
                raise UsageRejectedError(str(error).splitlines()[0] if str(error) else "") from error
            raise

    async def report(
        self, *, group_by: GroupBy, org_id: int | None = None, since: datetime | None = None
    ) -> list[UsageReportRow]:
        """Totals per model, UTC day, user, key or client session, optionally for one organisation and from
        a time on.

        Days come in date order; other groups with the most requests first.
        """
        errors = case((or_(UsageRow.error_type.is_not(None), UsageRow.status >= 400), 1), else_=0)
        unpriced = case((UsageRow.cost_usd.is_(None), 1), else_=0)
        group: SQLColumnExpression[Any]
        label: SQLColumnExpression[Any] = literal(None)
        keys: list[SQLColumnExpression[Any]]
        stmt_from: Any = UsageRow
        if group_by is GroupBy.MODEL:
            group = UsageRow.model
            keys = [group]
        elif group_by is GroupBy.DAY:
            group = utc_day(UsageRow.created_at)
            keys = [group]
        elif group_by is GroupBy.SESSION:
            group = UsageRow.session_id
            keys = [group]
        elif group_by is GroupBy.USER:
            group = User.name
            keys = [UsageRow.user_id, User.name]
            stmt_from = UsageRow.__table__.outerjoin(User.__table__, User.id == UsageRow.user_id)
        else:
            group, label = UsageRow.key_id, ApiKey.name + " (" + ApiKey.key_prefix + "…)"
            keys = [UsageRow.key_id, ApiKey.name, ApiKey.key_prefix]
            stmt_from = UsageRow.__table__.outerjoin(ApiKey.__table__, ApiKey.id == UsageRow.key_id)
        requests = func.count().label("requests")
        stmt: Select[*tuple[Any, ...]] = (
            select(
                group.label("group"),
                label.label("label"),
                requests,
                func.sum(errors),
                func.coalesce(func.sum(UsageRow.input_tokens), 0),
                func.coalesce(func.sum(UsageRow.output_tokens), 0),
                func.coalesce(func.sum(UsageRow.cache_creation_input_tokens), 0),
                func.coalesce(func.sum(UsageRow.cache_read_input_tokens), 0),
                func.sum(UsageRow.cost_usd),
                func.sum(unpriced),
            )
            .select_from(stmt_from)
            .group_by(*keys)
        )
        if org_id is not None:
            stmt = stmt.where(UsageRow.org_id == org_id)
        if since is not None:
            stmt = stmt.where(UsageRow.created_at >= since)
        stmt = stmt.order_by(group) if group_by is GroupBy.DAY else stmt.order_by(requests.desc(), group)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            UsageReportRow(
                group=None if row[0] is None else str(row[0]),
                label=row[1],
                requests=int(row[2]),
                errors=int(row[3] or 0),
                input_tokens=int(row[4]),
                output_tokens=int(row[5]),
                cache_creation_input_tokens=int(row[6]),
                cache_read_input_tokens=int(row[7]),
                cost_usd=_decimal(row[8]),
                unpriced_requests=int(row[9] or 0),
            )
            for row in rows
        ]

    async def series(self, query: UsageQuery) -> list[UsageSeriesRow]:
        """Totals per period and group (see :mod:`claudegate.store.usage_series`)."""
        return await usage_series(self._engine, query)

    async def recent_errors(self, *, since: datetime, limit: int = 20) -> list[dict[str, Any]]:
        """The newest failed calls from ``since`` on (newest first), with their organisation's name."""
        failed = or_(UsageRow.error_type.is_not(None), UsageRow.status >= 400)
        stmt = (
            select(
                UsageRow.created_at,
                Organization.name,
                UsageRow.model,
                UsageRow.upstream,
                UsageRow.status,
                UsageRow.error_type,
                UsageRow.request_id,
            )
            .select_from(
                UsageRow.__table__.outerjoin(Organization.__table__, Organization.id == UsageRow.org_id)
            )
            .where(UsageRow.created_at >= since, failed)
            .order_by(UsageRow.created_at.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        names = ("created_at", "org", "model", "upstream", "status", "error_type", "request_id")
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def refusals_by_upstream(self, *, since: datetime) -> dict[str | None, int]:
        """Calls answered 429 or 529 (refused by the gateway or an upstream) from ``since``, per upstream."""
        stmt = (
            select(UsageRow.upstream, func.count())
            .where(UsageRow.created_at >= since, UsageRow.status.in_((429, 529)))
            .group_by(UsageRow.upstream)
        )
        async with self._engine.connect() as conn:
            return {row[0]: int(row[1]) for row in (await conn.execute(stmt)).all()}


def _decimal(value: object) -> Decimal:
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    # SQLite sums NUMERIC columns as floats; go through str to keep the printed digits.
    return Decimal(str(value))
