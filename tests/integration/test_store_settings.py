"""Tenant settings in the repositories, each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from claudegate.keys import UNLIMITED_TENANT, LimitSet, TenantSettings, hash_key
from claudegate.store import InvalidSettingError, Store


async def test_new_organizations_users_and_keys_have_no_settings(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    alice = await store.orgs.create_user(acme.id, "alice")
    new = await store.keys.create_key(org_id=acme.id, user_id=alice.id)
    assert (acme.limits, acme.weight) == (LimitSet(), None)
    assert (alice.limits, alice.weight) == (LimitSet(), None)
    assert (new.row.limits, new.row.deadline_ms, new.row.priority) == (LimitSet(), None, None)
    found = await store.keys.find_active_key(hash_key(new.key))
    assert found is not None
    assert found.identity.settings == UNLIMITED_TENANT


async def test_organization_settings_change_only_what_is_given(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    updated = await store.orgs.update_org_settings(acme.id, requests_per_minute=600, weight=2.5)
    assert updated is not None
    assert updated.limits == LimitSet(requests_per_minute=600)
    assert updated.weight == 2.5

    updated = await store.orgs.update_org_settings(
        acme.id, tokens_per_minute=2_147_483_647, max_concurrency=8
    )
    assert updated is not None
    assert updated.limits == LimitSet(600, 2_147_483_647, 8)
    assert updated.weight == 2.5

    updated = await store.orgs.update_org_settings(acme.id, requests_per_minute=None, weight=None)
    assert updated is not None
    assert updated.limits == LimitSet(None, 2_147_483_647, 8)
    assert updated.weight is None

    unchanged = await store.orgs.update_org_settings(acme.id)
    assert unchanged == updated
    assert await store.orgs.get_org("acme") == updated
    assert await store.orgs.list_orgs() == [updated]


async def test_user_settings_are_per_user(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    alice = await store.orgs.create_user(acme.id, "alice")
    bob = await store.orgs.create_user(acme.id, "bob")
    updated = await store.orgs.update_user_settings(alice.id, max_concurrency=2, weight=0.5)
    assert updated is not None
    assert (updated.name, updated.limits, updated.weight) == ("alice", LimitSet(max_concurrency=2), 0.5)
    users = {user.name: user for user in await store.orgs.list_users(acme.id)}
    assert users["alice"] == updated
    assert users["bob"] == bob
    assert await store.orgs.get_user(acme.id, "alice") == updated
    cleared = await store.orgs.update_user_settings(alice.id, max_concurrency=None)
    assert cleared is not None
    assert (cleared.limits, cleared.weight) == (LimitSet(), 0.5)


async def test_key_settings_at_creation_and_later(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    new = await store.keys.create_key(
        org_id=acme.id, name="batch", requests_per_minute=60, deadline_ms=120_000, priority=-1
    )
    assert (new.row.limits, new.row.deadline_ms, new.row.priority) == (
        LimitSet(requests_per_minute=60),
        120_000,
        -1,
    )
    updated = await store.keys.update_key_settings(
        new.row.id, requests_per_minute=None, tokens_per_minute=50_000, max_concurrency=3, priority=10
    )
    assert updated is not None
    assert (updated.limits, updated.deadline_ms, updated.priority) == (LimitSet(None, 50_000, 3), 120_000, 10)
    cleared = await store.keys.update_key_settings(new.row.id, deadline_ms=None, priority=None)
    assert cleared is not None
    assert (cleared.deadline_ms, cleared.priority) == (None, None)
    assert await store.keys.list_keys(acme.id) == [cleared]
    assert await store.keys.get_key(new.row.id) == cleared


async def test_unknown_ids_give_none(store: Store) -> None:
    assert await store.orgs.update_org_settings(4242, weight=2) is None
    assert await store.orgs.update_user_settings(4242, weight=2) is None
    assert await store.keys.update_key_settings(4242, priority=2) is None
    assert await store.keys.update_key_settings(4242) is None
    # Beyond the id columns' range: still "no such row" (PostgreSQL would refuse to compare).
    huge = 2**40
    assert await store.orgs.update_org_settings(huge, weight=2) is None
    assert await store.orgs.update_user_settings(huge, weight=2) is None
    assert await store.keys.update_key_settings(huge, priority=2) is None
    assert await store.keys.get_key(huge) is None
    assert await store.keys.revoke_key(huge) is None


async def test_a_bad_value_changes_nothing(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    alice = await store.orgs.create_user(acme.id, "alice")
    new = await store.keys.create_key(org_id=acme.id, requests_per_minute=5)
    with pytest.raises(InvalidSettingError, match=r"max_concurrency: must be a whole number from 1"):
        await store.orgs.update_org_settings(acme.id, requests_per_minute=100, max_concurrency=0)
    with pytest.raises(InvalidSettingError, match=r"weight: must be a number"):
        await store.orgs.update_user_settings(alice.id, requests_per_minute=100, weight=0)
    with pytest.raises(InvalidSettingError, match=r"deadline_ms: must be a whole number"):
        await store.keys.update_key_settings(new.row.id, requests_per_minute=100, deadline_ms=-1)
    with pytest.raises(InvalidSettingError, match=r"priority: must be a whole number"):
        await store.keys.create_key(org_id=acme.id, priority=1.5)  # type: ignore[arg-type]
    assert (await store.orgs.get_org("acme")) == acme
    assert (await store.orgs.get_user(acme.id, "alice")) == alice
    assert await store.keys.list_keys() == [new.row]


async def test_the_key_lookup_brings_the_settings_of_key_user_and_organization(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    alice = await store.orgs.create_user(acme.id, "alice")
    await store.orgs.update_org_settings(
        acme.id, requests_per_minute=1000, tokens_per_minute=400_000, weight=3
    )
    await store.orgs.update_user_settings(alice.id, max_concurrency=4, weight=0.25)
    new = await store.keys.create_key(
        org_id=acme.id, user_id=alice.id, tokens_per_minute=10_000, deadline_ms=30_000, priority=2
    )
    found = await store.keys.find_active_key(hash_key(new.key))
    assert found is not None
    assert found.identity.settings == TenantSettings(
        key=LimitSet(tokens_per_minute=10_000),
        user=LimitSet(max_concurrency=4),
        org=LimitSet(requests_per_minute=1000, tokens_per_minute=400_000),
        deadline_ms=30_000,
        priority=2,
        org_weight=3.0,
        user_weight=0.25,
    )


async def test_a_key_without_a_user_has_an_unlimited_user_level(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    alice = await store.orgs.create_user(acme.id, "alice")
    await store.orgs.update_user_settings(alice.id, requests_per_minute=1, weight=9)
    await store.orgs.update_org_settings(acme.id, max_concurrency=10)
    service = await store.keys.create_key(org_id=acme.id, name="service")
    found = await store.keys.find_active_key(hash_key(service.key))
    assert found is not None
    settings = found.identity.settings
    assert settings.user.is_unlimited
    assert settings.user_weight == 1.0
    assert settings.org == LimitSet(max_concurrency=10)
    assert (settings.key, settings.deadline_ms, settings.priority, settings.org_weight) == (
        LimitSet(),
        None,
        0,
        1.0,
    )
