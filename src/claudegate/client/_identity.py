"""Who an in-process caller is, for flow control and usage records.

With a gateway key (``cg-…``) the caller is whoever owns it, resolved like the gateway resolves it, so
the key's, its user's and its organisation's limits apply. Without one, the caller names an organisation
(and optionally a user); both are created on first use, with a key named ``in-process`` that their usage
records are attributed to. That key's plaintext is dropped at once: code in this process does not need it,
and it is never logged.

The identity of the ``in-process`` key is read by the key store's own lookup (by the stored hash), so it
carries every setting a resolved key would (limits, weights, default deadline, priority, budgets), and it is
read again every ``key_cache_ttl_s``, so changes made with ``claudegate orgs limits`` or ``keys limits``
apply here as they would to a resolved key. If the key has been revoked, a new one is made: the process
holds the database, so revoking its key cannot lock it out (use a gateway key for that).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import select

from claudegate.keys import Identity
from claudegate.store import Store
from claudegate.store.tables import ApiKey

__all__ = ["IN_PROCESS_KEY_NAME", "LocalIdentity"]

IN_PROCESS_KEY_NAME = "in-process"


class LocalIdentity:
    """The identity of calls made without a gateway key, cached for ``ttl_s``."""

    __slots__ = ("_clock", "_expires", "_identity", "_key_hash", "_lock", "_org", "_ttl", "_user")

    def __init__(
        self, org: str, user: str | None, *, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._org = org
        self._user = user
        self._ttl = ttl_s
        self._clock = clock
        self._identity: Identity | None = None
        self._expires = 0.0
        self._key_hash: str | None = None
        self._lock = asyncio.Lock()

    async def get(self, store: Store) -> Identity:
        if self._identity is not None and self._clock() < self._expires:
            return self._identity
        async with self._lock:
            if self._identity is None or self._clock() >= self._expires:
                self._identity = await self._load(store)
                self._expires = self._clock() + self._ttl
        return self._identity

    async def _load(self, store: Store) -> Identity:
        if self._key_hash is not None:
            found = await store.keys.find_active_key(self._key_hash)
            if found is not None:
                return found.identity
        self._key_hash = await self._key(store)
        found = await store.keys.find_active_key(self._key_hash)
        if found is None:
            raise RuntimeError(f"the {IN_PROCESS_KEY_NAME!r} key of {self._org!r} vanished as it was made")
        return found.identity

    async def _key(self, store: Store) -> str:
        """The stored hash of the organisation's (or user's) active ``in-process`` key, made if need be."""
        org = await store.orgs.get_or_create_org(self._org)
        user_id = (
            (await store.orgs.get_or_create_user(org.id, self._user)).id if self._user is not None else None
        )
        key_id = next(
            (
                key.id
                for key in await store.keys.list_keys(org.id)
                if key.name == IN_PROCESS_KEY_NAME and key.user_id == user_id and key.active
            ),
            None,
        )
        if key_id is None:
            created = await store.keys.create_key(org_id=org.id, user_id=user_id, name=IN_PROCESS_KEY_NAME)
            key_id = created.row.id
        async with store.engine.connect() as conn:
            key_hash: str = (
                await conn.execute(select(ApiKey.key_hash).where(ApiKey.id == key_id))
            ).scalar_one()
        return key_hash
