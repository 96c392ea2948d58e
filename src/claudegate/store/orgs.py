"""Organisations and their users, with their tenant settings (limits and weight)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.store.rows import AlreadyExistsError, OrgRow, StoreError, UserRow, check_name, possible_id
from claudegate.store.settings import UNSET, Unset, checked_changes, limit_set
from claudegate.store.tables import Organization, User

__all__ = ["OrgRepository"]

_ORG_COLUMNS = (
    Organization.id,
    Organization.name,
    Organization.created_at,
    Organization.requests_per_minute,
    Organization.tokens_per_minute,
    Organization.max_concurrency,
    Organization.weight,
)
_USER_COLUMNS = (
    User.id,
    User.org_id,
    User.name,
    User.created_at,
    User.requests_per_minute,
    User.tokens_per_minute,
    User.max_concurrency,
    User.weight,
)


def _org(row: Any) -> OrgRow:
    """A row of _ORG_COLUMNS."""
    return OrgRow(row[0], row[1], row[2], limit_set(row[3], row[4], row[5]), row[6])


def _user(row: Any) -> UserRow:
    """A row of _USER_COLUMNS."""
    return UserRow(row[0], row[1], row[2], row[3], limit_set(row[4], row[5], row[6]), row[7])


class OrgRepository:
    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_org(self, name: str) -> OrgRow:
        """A new organisation; AlreadyExistsError if the name is taken, InvalidNameError if not a slug."""
        check_name("organization", name)
        stmt = insert(Organization).values(name=name, created_at=datetime.now(UTC)).returning(*_ORG_COLUMNS)
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(stmt)).one()
        except IntegrityError:
            raise AlreadyExistsError(f"organization {name!r} already exists") from None
        return _org(row)

    async def get_org(self, name: str) -> OrgRow | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*_ORG_COLUMNS).where(Organization.name == name))).first()
        return _org(row) if row else None

    async def get_or_create_org(self, name: str) -> OrgRow:
        found = await self.get_org(name)
        if found is not None:
            return found
        try:
            return await self.create_org(name)
        except AlreadyExistsError:  # created concurrently by someone else: theirs is as good as ours
            found = await self.get_org(name)
            if found is None:
                raise
            return found

    async def list_orgs(self) -> list[OrgRow]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(*_ORG_COLUMNS).order_by(Organization.name))).all()
        return [_org(row) for row in rows]

    async def update_org_settings(
        self,
        org_id: int,
        *,
        requests_per_minute: int | Unset | None = UNSET,
        tokens_per_minute: int | Unset | None = UNSET,
        max_concurrency: int | Unset | None = UNSET,
        weight: float | Unset | None = UNSET,
    ) -> OrgRow | None:
        """Change an organisation's settings: only those given, None clearing one (no limit, weight 1).

        Returns the organisation as it now is, or None if there is none with this id. Raises
        InvalidSettingError, before changing anything, for a value the setting cannot take. Running gateways
        apply the change within key_cache_ttl_s; call KeyResolver.clear() to apply it at once in this one.
        """
        changes = checked_changes(
            {
                "requests_per_minute": requests_per_minute,
                "tokens_per_minute": tokens_per_minute,
                "max_concurrency": max_concurrency,
                "weight": weight,
            }
        )
        if not possible_id(org_id):
            return None
        async with self._engine.begin() as conn:
            if changes:
                await conn.execute(update(Organization).where(Organization.id == org_id).values(changes))
            row = (await conn.execute(select(*_ORG_COLUMNS).where(Organization.id == org_id))).first()
        return _org(row) if row else None

    async def create_user(self, org_id: int, name: str) -> UserRow:
        """A new user in an organisation; AlreadyExistsError if the organisation already has one so named."""
        check_name("user", name)
        stmt = (
            insert(User)
            .values(org_id=org_id, name=name, created_at=datetime.now(UTC))
            .returning(*_USER_COLUMNS)
        )
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(stmt)).one()
        except IntegrityError:
            if await self.get_user(org_id, name) is not None:
                raise AlreadyExistsError(f"user {name!r} already exists in this organization") from None
            raise StoreError(f"organization {org_id} does not exist") from None
        return _user(row)

    async def get_user(self, org_id: int, name: str) -> UserRow | None:
        stmt = select(*_USER_COLUMNS).where(User.org_id == org_id, User.name == name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _user(row) if row else None

    async def get_or_create_user(self, org_id: int, name: str) -> UserRow:
        found = await self.get_user(org_id, name)
        if found is not None:
            return found
        try:
            return await self.create_user(org_id, name)
        except AlreadyExistsError:
            found = await self.get_user(org_id, name)
            if found is None:
                raise
            return found

    async def list_users(self, org_id: int) -> list[UserRow]:
        stmt = select(*_USER_COLUMNS).where(User.org_id == org_id).order_by(User.name)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_user(row) for row in rows]

    async def update_user_settings(
        self,
        user_id: int,
        *,
        requests_per_minute: int | Unset | None = UNSET,
        tokens_per_minute: int | Unset | None = UNSET,
        max_concurrency: int | Unset | None = UNSET,
        weight: float | Unset | None = UNSET,
    ) -> UserRow | None:
        """Change a user's settings, as :meth:`update_org_settings` does an organisation's. The user's weight
        shares the organisation's capacity among its users."""
        changes = checked_changes(
            {
                "requests_per_minute": requests_per_minute,
                "tokens_per_minute": tokens_per_minute,
                "max_concurrency": max_concurrency,
                "weight": weight,
            }
        )
        if not possible_id(user_id):
            return None
        async with self._engine.begin() as conn:
            if changes:
                await conn.execute(update(User).where(User.id == user_id).values(changes))
            row = (await conn.execute(select(*_USER_COLUMNS).where(User.id == user_id))).first()
        return _user(row) if row else None
