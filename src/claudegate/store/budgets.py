"""Budget caps of organisations and users as stored, and what they spent in a period (from usage records).

The gateway enforces caps with shared counters (``pipeline/budgets.py``); the usage records are the
authoritative account, which is what reports show next to the caps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.keys import BudgetCaps
from claudegate.store.api_keys import budget_caps
from claudegate.store.rows import InvalidSettingError, possible_id
from claudegate.store.settings import UNSET
from claudegate.store.tables import Organization, UsageRow, User

__all__ = ["BUDGET_SETTINGS", "BudgetRepository", "Spent", "check_budget_changes"]

BUDGET_SETTINGS: Final = ("daily_tokens", "monthly_tokens", "daily_usd", "monthly_usd")
_COLUMNS: Final = {name: f"budget_{name}" for name in BUDGET_SETTINGS}
_MAX_TOKENS: Final = 2**63 - 1
_MAX_USD: Final = Decimal("100000000000000")  # Numeric(20, 6)


@dataclass(frozen=True, slots=True)
class Spent:
    """Tokens (all input, cached or not, and output) and dollars recorded since a time."""

    tokens: int
    usd: Decimal


def _shown(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _check(name: str, value: object) -> int | Decimal | None:
    if value is None:
        return None
    if name.endswith("_tokens"):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_TOKENS:
            raise InvalidSettingError(name, f"must be a whole number of tokens from 1; got {_shown(value)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidSettingError(name, f"must be a number of US dollars; got {_shown(value)}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidSettingError(name, f"must be a number of US dollars; got {_shown(value)}") from None
    if not amount.is_finite() or not Decimal(0) < amount < _MAX_USD:
        raise InvalidSettingError(name, f"must be a positive number of US dollars; got {_shown(value)}")
    return amount.quantize(Decimal("0.000001"))


def check_budget_changes(changes: Mapping[str, object]) -> dict[str, int | Decimal | None]:
    """The given caps (UNSET ones left out) checked, by setting name; None clears a cap."""
    checked: dict[str, int | Decimal | None] = {}
    for name, value in changes.items():
        if value is UNSET:
            continue
        if name not in _COLUMNS:
            raise InvalidSettingError(name, f"is not a budget; use {', '.join(BUDGET_SETTINGS)}")
        checked[name] = _check(name, value)
    return checked


class BudgetRepository:
    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, *, org_id: int, user_id: int | None = None) -> BudgetCaps | None:
        """The organisation's caps, or its user's; None if there is no such organisation or user."""
        table: Any = User if user_id is not None else Organization
        ident = user_id if user_id is not None else org_id
        if not possible_id(ident):
            return None
        stmt = select(*(getattr(table, column) for column in _COLUMNS.values())).where(table.id == ident)
        if user_id is not None:
            stmt = stmt.where(User.org_id == org_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return budget_caps(*row) if row is not None else None

    async def update(
        self, *, org_id: int, user_id: int | None = None, changes: Mapping[str, object]
    ) -> BudgetCaps | None:
        """Change the caps given (None clears one); InvalidSettingError, before changing anything, for a
        value a cap cannot take. Running gateways apply it within key_cache_ttl_s (KeyResolver.clear() in
        this one applies it at once)."""
        checked = check_budget_changes(changes)
        table: Any = User if user_id is not None else Organization
        ident = user_id if user_id is not None else org_id
        if not possible_id(ident):
            return None
        if checked:
            values = {_COLUMNS[name]: value for name, value in checked.items()}
            stmt = update(table).where(table.id == ident).values(values)
            if user_id is not None:
                stmt = stmt.where(User.org_id == org_id)
            async with self._engine.begin() as conn:
                await conn.execute(stmt)
        return await self.get(org_id=org_id, user_id=user_id)

    async def spent(self, *, org_id: int, user_id: int | None, since: datetime) -> Spent:
        """What the usage records say the organisation (or its user) spent since ``since``."""
        stmt = select(
            func.coalesce(
                func.sum(
                    UsageRow.input_tokens
                    + UsageRow.output_tokens
                    + UsageRow.cache_creation_input_tokens
                    + UsageRow.cache_read_input_tokens
                ),
                0,
            ),
            func.sum(UsageRow.cost_usd),
        ).where(UsageRow.org_id == org_id, UsageRow.created_at >= since)
        if user_id is not None:
            stmt = stmt.where(UsageRow.user_id == user_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).one()
        usd = row[1]
        return Spent(tokens=int(row[0]), usd=Decimal(str(usd)) if usd is not None else Decimal(0))

    async def spent_by_tenant(self, *, since: datetime) -> list[tuple[int, int | None, float, float]]:
        """What every organisation, and every user of one, spent since ``since`` (those that spent at all),
        as (organisation id, user id or None for the whole organisation, tokens, dollars): what the gateway's
        budget counters start from."""
        tokens = func.coalesce(
            func.sum(
                UsageRow.input_tokens
                + UsageRow.output_tokens
                + UsageRow.cache_creation_input_tokens
                + UsageRow.cache_read_input_tokens
            ),
            0,
        )
        usd = func.sum(UsageRow.cost_usd)
        since_filter = (UsageRow.created_at >= since, UsageRow.org_id.is_not(None))
        by_org = select(UsageRow.org_id, tokens, usd).where(*since_filter).group_by(UsageRow.org_id)
        by_user = (
            select(UsageRow.org_id, UsageRow.user_id, tokens, usd)
            .where(*since_filter, UsageRow.user_id.is_not(None))
            .group_by(UsageRow.org_id, UsageRow.user_id)
        )
        async with self._engine.connect() as conn:
            orgs = (await conn.execute(by_org)).all()
            users = (await conn.execute(by_user)).all()
        spent: list[tuple[int, int | None, float, float]] = [
            (row[0], None, float(row[1]), float(row[2] or 0)) for row in orgs if row[0] is not None
        ]
        spent += [(row[0], row[1], float(row[2]), float(row[3] or 0)) for row in users if row[0] is not None]
        return spent
