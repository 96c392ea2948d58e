"""KeyResolver in front of the real store."""

from __future__ import annotations

import pytest

from claudegate.errors import AuthenticationError
from claudegate.keys import KeyResolver, StoredKey, hash_key
from claudegate.store import Store


class CountingLookup:
    """The store's key repository, counting how often the resolver has to ask it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls = 0

    async def find_active_key(self, key_hash: str) -> StoredKey | None:
        self.calls += 1
        return await self.store.keys.find_active_key(key_hash)


async def test_a_key_resolves_to_its_owner_and_then_comes_from_the_cache(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    alice = await store.orgs.create_user(acme.id, "alice")
    new = await store.keys.create_key(org_id=acme.id, user_id=alice.id, name="ci")
    lookup = CountingLookup(store)
    resolver = KeyResolver(lookup, ttl_s=60)
    for _ in range(100):
        identity = await resolver.resolve(new.key)
    assert (identity.org_id, identity.org_name, identity.user_name, identity.key_id, identity.key_name) == (
        acme.id,
        "acme",
        "alice",
        new.row.id,
        "ci",
    )
    assert lookup.calls == 1


async def test_revoking_and_forgetting_rejects_the_key_at_once(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    new = await store.keys.create_key(org_id=acme.id)
    other = await store.keys.create_key(org_id=acme.id)
    resolver = KeyResolver(store.keys, ttl_s=60)
    await resolver.resolve(new.key)
    await resolver.resolve(other.key)
    await store.keys.revoke_key(new.row.id)
    resolver.forget_key(new.row.id)
    with pytest.raises(AuthenticationError, match="invalid x-api-key"):
        await resolver.resolve(new.key)
    assert (await resolver.resolve(other.key)).key_id == other.row.id


async def test_a_revoked_key_stops_working_within_the_ttl_without_being_forgotten(store: Store) -> None:
    """What another gateway process sees: it was not told, so the TTL bounds how long the key lives on."""
    now = [0.0]
    acme = await store.orgs.create_org("acme")
    new = await store.keys.create_key(org_id=acme.id)
    resolver = KeyResolver(store.keys, ttl_s=5, clock=lambda: now[0])
    await resolver.resolve(new.key)
    await store.keys.revoke_key(new.row.id)
    now[0] = 5.1
    with pytest.raises(AuthenticationError):
        await resolver.resolve(new.key)


async def test_an_unknown_key_is_rejected(store: Store) -> None:
    resolver = KeyResolver(store.keys, ttl_s=5)
    with pytest.raises(AuthenticationError):
        await resolver.resolve("cg-" + "x" * 40)
    assert await store.keys.find_active_key(hash_key("cg-" + "x" * 40)) is None
