"""KeyResolver in front of the real store."""

from __future__ import annotations

import pytest

from claudegate.errors import AuthenticationError
from claudegate.keys import KeyResolver, LimitSet, StoredKey, hash_key
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


async def test_a_resolved_key_carries_its_tenant_settings(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    alice = await store.orgs.create_user(acme.id, "alice")
    await store.orgs.update_org_settings(acme.id, tokens_per_minute=100_000, weight=2)
    await store.orgs.update_user_settings(alice.id, requests_per_minute=30)
    new = await store.keys.create_key(org_id=acme.id, user_id=alice.id, max_concurrency=2, deadline_ms=5000)
    identity = await KeyResolver(store.keys, ttl_s=60).resolve(new.key)
    assert identity.settings.key == LimitSet(max_concurrency=2)
    assert identity.settings.user == LimitSet(requests_per_minute=30)
    assert identity.settings.org == LimitSet(tokens_per_minute=100_000)
    assert (identity.settings.deadline_ms, identity.settings.priority) == (5000, 0)
    assert (identity.settings.org_weight, identity.settings.user_weight) == (2.0, 1.0)


async def test_settings_changed_elsewhere_apply_within_the_ttl(store: Store) -> None:
    """Another process changed the settings: this resolver keeps its cached entry until the TTL runs out."""
    now = [0.0]
    acme = await store.orgs.create_org("acme")
    new = await store.keys.create_key(org_id=acme.id)
    resolver = KeyResolver(store.keys, ttl_s=5, clock=lambda: now[0])
    assert (await resolver.resolve(new.key)).settings.org.is_unlimited
    await store.orgs.update_org_settings(acme.id, requests_per_minute=10)
    await store.keys.update_key_settings(new.row.id, priority=7)
    now[0] = 4.9
    assert (await resolver.resolve(new.key)).settings.org.is_unlimited
    now[0] = 5.1
    settings = (await resolver.resolve(new.key)).settings
    assert (settings.org.requests_per_minute, settings.priority) == (10, 7)


async def test_forgetting_applies_settings_changes_at_once(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    new = await store.keys.create_key(org_id=acme.id)
    resolver = KeyResolver(store.keys, ttl_s=60)
    await resolver.resolve(new.key)
    await store.keys.update_key_settings(new.row.id, deadline_ms=1500)
    resolver.forget_key(new.row.id)
    assert (await resolver.resolve(new.key)).settings.deadline_ms == 1500
    await store.orgs.update_org_settings(acme.id, weight=4)
    resolver.clear()
    assert (await resolver.resolve(new.key)).settings.org_weight == 4.0
