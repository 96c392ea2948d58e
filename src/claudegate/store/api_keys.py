"""Gateway keys: created here (plaintext returned once), stored as hashes, looked up by hash with their
tenant settings, revoked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.keys import (
    NO_BUDGET,
    UNLIMITED_TENANT,
    BudgetCaps,
    Identity,
    KeyStoreUnavailableError,
    StoredKey,
    TenantSettings,
    display_prefix,
    generate_key,
    hash_key,
)
from claudegate.store.rows import KeyRow, NewKey, StoreError, possible_id
from claudegate.store.settings import UNSET, Unset, checked_changes, limit_set
from claudegate.store.tables import ApiKey, Organization, User

__all__ = ["KeyRepository"]

_MAX_KEY_NAME = 200


# A key row joined to its organisation and user; statements are immutable, so sharing one is safe.
_KEY_ROWS = (
    select(
        ApiKey.id,
        ApiKey.org_id,
        Organization.name,
        ApiKey.user_id,
        User.name,
        ApiKey.name,
        ApiKey.key_prefix,
        ApiKey.created_at,
        ApiKey.revoked_at,
        ApiKey.last_used_at,
        ApiKey.requests_per_minute,
        ApiKey.tokens_per_minute,
        ApiKey.max_concurrency,
        ApiKey.deadline_ms,
        ApiKey.priority,
        ApiKey.act_for_users,
        ApiKey.cache_replies,
    )
    .join(Organization, Organization.id == ApiKey.org_id)
    .outerjoin(User, User.id == ApiKey.user_id)
)

# What find_active_key reads, in one query on the hash index: the key, its owners and all their settings.
_ACTIVE_KEY_ANY = (
    select(
        ApiKey.key_hash,
        ApiKey.org_id,
        Organization.name,
        ApiKey.user_id,
        User.name,
        ApiKey.id,
        ApiKey.name,
        ApiKey.requests_per_minute,
        ApiKey.tokens_per_minute,
        ApiKey.max_concurrency,
        ApiKey.deadline_ms,
        ApiKey.priority,
        User.requests_per_minute,
        User.tokens_per_minute,
        User.max_concurrency,
        User.weight,
        Organization.requests_per_minute,
        Organization.tokens_per_minute,
        Organization.max_concurrency,
        Organization.weight,
        # Revision 0003, from column 20 on: the key's permission, then the user's and the org's budgets.
        ApiKey.act_for_users,
        User.budget_daily_tokens,
        User.budget_monthly_tokens,
        User.budget_daily_usd,
        User.budget_monthly_usd,
        Organization.budget_daily_tokens,
        Organization.budget_monthly_tokens,
        Organization.budget_daily_usd,
        Organization.budget_monthly_usd,
        ApiKey.cache_replies,  # revision 0012: column 29
    )
    .join(Organization, Organization.id == ApiKey.org_id)
    .outerjoin(User, User.id == ApiKey.user_id)
    .where(ApiKey.revoked_at.is_(None))
)
_ACTIVE_KEY = _ACTIVE_KEY_ANY.where(ApiKey.key_hash == bindparam("key_hash"))


def _stored_key(row: Any) -> StoredKey:
    """A row of _ACTIVE_KEY_ANY: the key's hash and the identity it gives its callers."""
    identity = Identity(
        org_id=row[1],
        org_name=row[2],
        user_id=row[3],
        user_name=row[4],
        key_id=row[5],
        key_name=row[6],
        settings=_tenant_settings(row),
        can_act_for_users=bool(row[20]),
        cache_replies=row[29],
    )
    return StoredKey(key_hash=row[0], identity=identity)


def _key_row(row: Any) -> KeyRow:
    """A row of _KEY_ROWS (typed Any: SQLAlchemy's row typing stops short of this many columns)."""
    return KeyRow(
        id=row[0],
        org_id=row[1],
        org_name=row[2],
        user_id=row[3],
        user_name=row[4],
        name=row[5],
        prefix=row[6],
        created_at=row[7],
        revoked_at=row[8],
        last_used_at=row[9],
        limits=limit_set(row[10], row[11], row[12]),
        deadline_ms=row[13],
        priority=row[14],
        act_for_users=bool(row[15]),
        cache_replies=row[16],
    )


def budget_caps(
    daily_tokens: int | None, monthly_tokens: int | None, daily_usd: Any, monthly_usd: Any
) -> BudgetCaps:
    """BudgetCaps from four stored columns (dollars as Decimal), sharing one instance when none is set."""
    if daily_tokens is None and monthly_tokens is None and daily_usd is None and monthly_usd is None:
        return NO_BUDGET
    return BudgetCaps(
        daily_tokens=daily_tokens,
        monthly_tokens=monthly_tokens,
        daily_usd=None if daily_usd is None else float(daily_usd),
        monthly_usd=None if monthly_usd is None else float(monthly_usd),
    )


def _tenant_settings(row: Any) -> TenantSettings:
    """The settings in a row of _ACTIVE_KEY (columns 7 to 19, and the budgets from 21 on); the shared
    default when none is set."""
    values = row[7:20]
    budgets = row[21:29]
    if all(value is None for value in values) and all(value is None for value in budgets):
        return UNLIMITED_TENANT
    return TenantSettings(
        key=limit_set(values[0], values[1], values[2]),
        user=limit_set(values[5], values[6], values[7]),
        org=limit_set(values[9], values[10], values[11]),
        deadline_ms=values[3],
        priority=0 if values[4] is None else values[4],
        org_weight=1.0 if values[12] is None else values[12],
        user_weight=1.0 if values[8] is None else values[8],
        user_budget=budget_caps(*budgets[:4]),
        org_budget=budget_caps(*budgets[4:]),
    )


def check_key_name(name: str) -> str:
    if not name or len(name) > _MAX_KEY_NAME or not name.isprintable():
        raise StoreError(f"key name must be 1 to {_MAX_KEY_NAME} printable characters")
    return name


class KeyRepository:
    """Implements :class:`claudegate.keys.KeyLookup` for the resolver."""

    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_key(
        self,
        *,
        org_id: int,
        user_id: int | None = None,
        name: str = "default",
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        max_concurrency: int | None = None,
        deadline_ms: int | None = None,
        priority: int | None = None,
        act_for_users: bool | None = None,
        cache_replies: bool | None = None,
    ) -> NewKey:
        """A new key for an organisation (and optionally one of its users). The plaintext is in the result
        and nowhere else: only its hash and display prefix are stored.

        The settings are as in :meth:`update_key_settings`; InvalidSettingError for one it cannot take.
        """
        check_key_name(name)
        settings = checked_changes(
            {
                "requests_per_minute": requests_per_minute,
                "tokens_per_minute": tokens_per_minute,
                "max_concurrency": max_concurrency,
                "deadline_ms": deadline_ms,
                "priority": priority,
                "act_for_users": act_for_users,
                "cache_replies": cache_replies,
            }
        )
        key = generate_key()
        values = {
            **settings,
            "org_id": org_id,
            "user_id": user_id,
            "name": name,
            "key_prefix": display_prefix(key),
            "key_hash": hash_key(key),
            "created_at": datetime.now(UTC),
        }
        async with self._engine.begin() as conn:
            key_id = (await conn.execute(insert(ApiKey).values(values).returning(ApiKey.id))).scalar_one()
            row = (await conn.execute(_KEY_ROWS.where(ApiKey.id == key_id))).one()
        return NewKey(key=key, row=_key_row(row))

    async def find_active_key(self, key_hash: str) -> StoredKey | None:
        """The active key with this hash, who owns it and the settings that apply to it (one query);
        KeyStoreUnavailableError if the database is down."""
        try:
            async with self._engine.connect() as conn:
                row = (await conn.execute(_ACTIVE_KEY, {"key_hash": key_hash})).first()
        except (SQLAlchemyError, OSError) as exc:
            raise KeyStoreUnavailableError(type(exc).__name__) from exc
        return _stored_key(row) if row is not None else None

    async def find_active_key_by_id(self, key_id: int) -> StoredKey | None:
        """The active key with this id, as :meth:`find_active_key` finds one by hash (the web console's
        operator acts with a chosen key of an organisation in its playground)."""
        if not possible_id(key_id):
            return None
        async with self._engine.connect() as conn:
            row = (await conn.execute(_ACTIVE_KEY_ANY.where(ApiKey.id == key_id))).first()
        return _stored_key(row) if row is not None else None

    async def get_key(self, key_id: int) -> KeyRow | None:
        if not possible_id(key_id):
            return None
        async with self._engine.connect() as conn:
            row = (await conn.execute(_KEY_ROWS.where(ApiKey.id == key_id))).first()
        return _key_row(row) if row else None

    async def list_keys(self, org_id: int | None = None) -> list[KeyRow]:
        stmt = _KEY_ROWS.order_by(ApiKey.id)
        if org_id is not None:
            stmt = stmt.where(ApiKey.org_id == org_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_key_row(row) for row in rows]

    async def revoke_key(self, key_id: int) -> KeyRow | None:
        """Revoke a key (idempotent: revoking twice keeps the first time). None if there is no such key.

        Other gateway processes notice within their key cache TTL; call KeyResolver.forget_key in this one.
        """
        if not possible_id(key_id):
            return None
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)
            row = (await conn.execute(_KEY_ROWS.where(ApiKey.id == key_id))).first()
        return _key_row(row) if row else None

    async def update_key_settings(
        self,
        key_id: int,
        *,
        requests_per_minute: int | Unset | None = UNSET,
        tokens_per_minute: int | Unset | None = UNSET,
        max_concurrency: int | Unset | None = UNSET,
        deadline_ms: int | Unset | None = UNSET,
        priority: int | Unset | None = UNSET,
        act_for_users: bool | Unset | None = UNSET,
        cache_replies: bool | Unset | None = UNSET,
    ) -> KeyRow | None:
        """Change a key's settings: only those given, None clearing one (no limit, no default deadline,
        priority 0, may not act for end users, caching as the organisation's). Limits and the deadline are
        positive whole numbers; the priority any whole number (higher first); ``act_for_users`` and
        ``cache_replies`` true or false.

        Returns the key as it now is, or None if there is no such key. Raises InvalidSettingError, before
        changing anything, for a value a setting cannot take. Running gateways apply the change within
        key_cache_ttl_s; call KeyResolver.forget_key in this one to apply it at once.
        """
        changes = checked_changes(
            {
                "requests_per_minute": requests_per_minute,
                "tokens_per_minute": tokens_per_minute,
                "max_concurrency": max_concurrency,
                "deadline_ms": deadline_ms,
                "priority": priority,
                "act_for_users": act_for_users,
                "cache_replies": cache_replies,
            }
        )
        if not possible_id(key_id):
            return None
        async with self._engine.begin() as conn:
            if changes:
                await conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(changes))
            row = (await conn.execute(_KEY_ROWS.where(ApiKey.id == key_id))).first()
        return _key_row(row) if row else None
