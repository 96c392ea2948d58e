"""Gateway keys: created here (plaintext returned once), stored as hashes, looked up by hash, revoked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.keys import (
    Identity,
    KeyStoreUnavailableError,
    StoredKey,
    display_prefix,
    generate_key,
    hash_key,
)
from claudegate.store.rows import KeyRow, NewKey, StoreError
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
    )
    .join(Organization, Organization.id == ApiKey.org_id)
    .outerjoin(User, User.id == ApiKey.user_id)
)


def _key_row(row: Any) -> KeyRow:
    """A row of _KEY_ROWS (typed Any: SQLAlchemy's row typing stops short of ten columns)."""
    return KeyRow(*row)


def check_key_name(name: str) -> str:
    if not name or len(name) > _MAX_KEY_NAME or not name.isprintable():
        raise StoreError(f"key name must be 1 to {_MAX_KEY_NAME} printable characters")
    return name


class KeyRepository:
    """Implements :class:`claudegate.keys.KeyLookup` for the resolver."""

    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_key(self, *, org_id: int, user_id: int | None = None, name: str = "default") -> NewKey:
        """A new key for an organisation (and optionally one of its users). The plaintext is in the result
        and nowhere else: only its hash and display prefix are stored."""
        check_key_name(name)
        key = generate_key()
        values = {
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
        """The active key with this hash and who owns it; KeyStoreUnavailableError if the database is down."""
        stmt = (
            select(
                ApiKey.key_hash,
                ApiKey.org_id,
                Organization.name,
                ApiKey.user_id,
                User.name,
                ApiKey.id,
                ApiKey.name,
            )
            .join(Organization, Organization.id == ApiKey.org_id)
            .outerjoin(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        )
        try:
            async with self._engine.connect() as conn:
                row = (await conn.execute(stmt)).first()
        except (SQLAlchemyError, OSError) as exc:
            raise KeyStoreUnavailableError(type(exc).__name__) from exc
        if row is None:
            return None
        identity = Identity(
            org_id=row[1], org_name=row[2], user_id=row[3], user_name=row[4], key_id=row[5], key_name=row[6]
        )
        return StoredKey(key_hash=row[0], identity=identity)

    async def get_key(self, key_id: int) -> KeyRow | None:
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
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)
            row = (await conn.execute(_KEY_ROWS.where(ApiKey.id == key_id))).first()
        return _key_row(row) if row else None
