"""Organisations and their users."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.store.rows import AlreadyExistsError, OrgRow, StoreError, UserRow, check_name
from claudegate.store.tables import Organization, User

__all__ = ["OrgRepository"]

_ORG_COLUMNS = (Organization.id, Organization.name, Organization.created_at)
_USER_COLUMNS = (User.id, User.org_id, User.name, User.created_at)


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
        return OrgRow(*row)

    async def get_org(self, name: str) -> OrgRow | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*_ORG_COLUMNS).where(Organization.name == name))).first()
        return OrgRow(*row) if row else None

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
        return [OrgRow(*row) for row in rows]

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
        return UserRow(*row)

    async def get_user(self, org_id: int, name: str) -> UserRow | None:
        stmt = select(*_USER_COLUMNS).where(User.org_id == org_id, User.name == name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return UserRow(*row) if row else None

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
        return [UserRow(*row) for row in rows]
