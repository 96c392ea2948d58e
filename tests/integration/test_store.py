"""The repositories, each test on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from claudegate.accounting.usage import UsageRecord
from claudegate.keys import hash_key, looks_like_key
from claudegate.store import AlreadyExistsError, GroupBy, InvalidNameError, Store
from claudegate.wire.usage_tap import Usage

DAY1 = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 0, 0, 1, tzinfo=UTC)


async def test_organizations_are_unique_by_name(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    assert (await store.orgs.get_or_create_org("acme")).id == acme.id
    with pytest.raises(AlreadyExistsError, match="'acme' already exists"):
        await store.orgs.create_org("acme")
    assert await store.orgs.get_org("nope") is None
    await store.orgs.create_org("beta")
    assert [org.name for org in await store.orgs.list_orgs()] == ["acme", "beta"]
    assert acme.created_at.tzinfo is not None


@pytest.mark.parametrize("name", ["", "has space", "a/b", "-leading", "x" * 129])
async def test_names_must_be_url_safe_slugs(store: Store, name: str) -> None:
    with pytest.raises(InvalidNameError, match="not allowed"):
        await store.orgs.create_org(name)


async def test_user_names_are_unique_within_an_organization(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    beta = await store.orgs.create_org("beta")
    alice = await store.orgs.create_user(acme.id, "alice@example.com")
    await store.orgs.create_user(beta.id, "alice@example.com")  # another org: fine
    with pytest.raises(AlreadyExistsError):
        await store.orgs.create_user(acme.id, "alice@example.com")
    assert (await store.orgs.get_or_create_user(acme.id, "alice@example.com")).id == alice.id
    assert [user.name for user in await store.orgs.list_users(acme.id)] == ["alice@example.com"]


async def test_keys_are_stored_as_hashes_and_shown_once(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    alice = await store.orgs.create_user(acme.id, "alice")
    new = await store.keys.create_key(org_id=acme.id, user_id=alice.id, name="laptop")
    assert looks_like_key(new.key)
    assert new.key not in repr(new)
    assert new.row.prefix == new.key[:10]
    assert (new.row.org_name, new.row.user_name, new.row.name) == ("acme", "alice", "laptop")

    async with store.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT key_hash, key_prefix FROM api_keys"))).one()
        dump = " ".join(
            str(value) for row in (await conn.execute(text("SELECT * FROM api_keys"))) for value in row
        )
    assert stored == (hash_key(new.key), new.key[:10])
    assert new.key not in dump

    found = await store.keys.find_active_key(hash_key(new.key))
    assert found is not None
    assert (found.identity.org_name, found.identity.user_name, found.identity.key_id) == (
        "acme",
        "alice",
        new.row.id,
    )


async def test_revoked_keys_are_not_found_and_revoking_twice_keeps_the_first_time(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    new = await store.keys.create_key(org_id=acme.id)
    revoked = await store.keys.revoke_key(new.row.id)
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert not revoked.active
    assert await store.keys.find_active_key(hash_key(new.key)) is None
    again = await store.keys.revoke_key(new.row.id)
    assert again is not None
    assert again.revoked_at == revoked.revoked_at
    assert await store.keys.revoke_key(9999) is None


async def test_list_keys_by_organization(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    beta = await store.orgs.create_org("beta")
    a1 = await store.keys.create_key(org_id=acme.id, name="one")
    await store.keys.create_key(org_id=beta.id, name="two")
    a3 = await store.keys.create_key(org_id=acme.id, name="three")
    assert [key.id for key in await store.keys.list_keys(acme.id)] == [a1.row.id, a3.row.id]
    assert len(await store.keys.list_keys()) == 3


async def _usage_fixture(store: Store) -> tuple[int, int, int, int]:
    acme = await store.orgs.create_org("acme")
    beta = await store.orgs.create_org("beta")
    alice = await store.orgs.create_user(acme.id, "alice")
    key_a = await store.keys.create_key(org_id=acme.id, user_id=alice.id, name="alice-key")
    key_b = await store.keys.create_key(org_id=acme.id, name="service")
    records = [
        UsageRecord(
            request_id="r1",
            model="claude-sonnet-4-5",
            status=200,
            created_at=DAY1,
            org_id=acme.id,
            user_id=alice.id,
            key_id=key_a.row.id,
            usage=Usage(
                input_tokens=100,
                output_tokens=50,
                cache_creation_input_tokens=10,
                cache_read_input_tokens=1000,
            ),
            cost_usd=Decimal("0.00123"),
        ),
        UsageRecord(
            request_id="r2",
            model="claude-sonnet-4-5",
            status=200,
            created_at=DAY2,
            org_id=acme.id,
            user_id=alice.id,
            key_id=key_a.row.id,
            usage=Usage(input_tokens=200, output_tokens=20),
            cost_usd=Decimal("0.0009"),
        ),
        UsageRecord(
            request_id="r3",
            model="claude-sonnet-4-5",
            status=529,
            created_at=DAY2,
            org_id=acme.id,
            key_id=key_b.row.id,
            error_type="overloaded_error",
            cost_usd=Decimal(0),
        ),
        UsageRecord(  # an unpriced model
            request_id="r4",
            model="claude-haiku-5-5",
            status=200,
            created_at=DAY2,
            org_id=acme.id,
            key_id=key_b.row.id,
            usage=Usage(input_tokens=7, output_tokens=3),
        ),
        UsageRecord(  # a stream that failed after its 200
            request_id="r5",
            model="claude-haiku-5-5",
            status=200,
            created_at=DAY2,
            org_id=acme.id,
            key_id=key_b.row.id,
            error_type="api_error",
        ),
        UsageRecord(  # another organisation's
            request_id="r6",
            model="claude-opus-4-7",
            status=200,
            created_at=DAY2,
            org_id=beta.id,
            usage=Usage(input_tokens=1),
            cost_usd=Decimal(5),
        ),
    ]
    await store.usage.insert_usage(records)
    return acme.id, beta.id, key_a.row.id, key_b.row.id


async def test_usage_report_by_model(store: Store) -> None:
    acme, _beta, _key_a, _key_b = await _usage_fixture(store)
    rows = {row.group: row for row in await store.usage.report(group_by=GroupBy.MODEL, org_id=acme)}
    assert set(rows) == {"claude-sonnet-4-5", "claude-haiku-5-5"}
    sonnet = rows["claude-sonnet-4-5"]
    assert (sonnet.requests, sonnet.errors) == (3, 1)
    assert (sonnet.input_tokens, sonnet.output_tokens) == (300, 70)
    assert (sonnet.cache_creation_input_tokens, sonnet.cache_read_input_tokens) == (10, 1000)
    assert sonnet.cost_usd == Decimal("0.00213")
    assert sonnet.unpriced_requests == 0
    haiku = rows["claude-haiku-5-5"]
    assert (haiku.requests, haiku.errors, haiku.unpriced_requests, haiku.cost_usd) == (2, 1, 2, Decimal(0))


async def test_usage_report_by_utc_day_and_since(store: Store) -> None:
    acme, _beta, _key_a, _key_b = await _usage_fixture(store)
    days = await store.usage.report(group_by=GroupBy.DAY, org_id=acme)
    assert [(row.group, row.requests) for row in days] == [("2026-11-20", 1), ("2026-11-21", 4)]
    later = await store.usage.report(group_by=GroupBy.DAY, org_id=acme, since=DAY2 - timedelta(seconds=1))
    assert [(row.group, row.requests) for row in later] == [("2026-11-21", 4)]
    everyone = await store.usage.report(group_by=GroupBy.DAY)
    assert sum(row.requests for row in everyone) == 6


async def test_usage_report_by_user_and_key(store: Store) -> None:
    acme, _beta, key_a, key_b = await _usage_fixture(store)
    users = {row.group: row.requests for row in await store.usage.report(group_by=GroupBy.USER, org_id=acme)}
    assert users == {"alice": 2, None: 3}
    keys = {row.group: row for row in await store.usage.report(group_by=GroupBy.KEY, org_id=acme)}
    assert keys[str(key_a)].requests == 2
    assert (keys[str(key_a)].label or "").startswith("alice-key (cg-")
    assert keys[str(key_b)].requests == 3


async def test_usage_moves_last_used_at_forward(store: Store) -> None:
    _acme, _beta, key_a, _key_b = await _usage_fixture(store)
    key = await store.keys.get_key(key_a)
    assert key is not None
    assert key.last_used_at == DAY2
    await store.usage.insert_usage(
        [UsageRecord(request_id="old", model="m", status=200, created_at=DAY1, key_id=key_a)]
    )
    key = await store.keys.get_key(key_a)
    assert key is not None
    assert key.last_used_at == DAY2  # an older record never moves it back


async def test_batch_ownership_and_newest_first_pagination(store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    beta = await store.orgs.create_org("beta")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(5):
        await store.batches.record_batch(
            f"msgbatch_{n}",
            org_id=acme.id,
            user_id=None,
            key_id=None,
            created_at=start + timedelta(minutes=n),
        )
    await store.batches.record_batch("msgbatch_beta", org_id=beta.id, user_id=None, key_id=7, upstream="west")
    with pytest.raises(AlreadyExistsError):
        await store.batches.record_batch("msgbatch_0", org_id=beta.id, user_id=None, key_id=None)

    owner = await store.batches.get_batch_owner("msgbatch_beta")
    assert owner is not None
    assert (owner.org_id, owner.key_id, owner.upstream) == (beta.id, 7, "west")
    assert await store.batches.get_batch_owner("msgbatch_missing") is None

    first = await store.batches.list_batch_ids(acme.id, limit=2)
    assert (first.ids, first.has_more) == (["msgbatch_4", "msgbatch_3"], True)
    second = await store.batches.list_batch_ids(acme.id, limit=2, after_id=first.last_id)
    assert (second.ids, second.has_more) == (["msgbatch_2", "msgbatch_1"], True)
    last = await store.batches.list_batch_ids(acme.id, limit=2, after_id=second.last_id)
    assert (last.ids, last.has_more) == (["msgbatch_0"], False)
    back = await store.batches.list_batch_ids(acme.id, limit=2, before_id=second.first_id)
    assert (back.ids, back.has_more) == (["msgbatch_4", "msgbatch_3"], False)
    # another organisation's batch id is not a cursor into this one's list
    assert (await store.batches.list_batch_ids(acme.id, after_id="msgbatch_beta")).ids == []
    beta_page = await store.batches.list_batch_ids(beta.id)
    assert (beta_page.ids, beta_page.upstreams) == (["msgbatch_beta"], ["west"])
    assert first.upstreams == [None, None]  # recorded without an upstream: the preferred one
