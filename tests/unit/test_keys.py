from __future__ import annotations

import asyncio
import hashlib
import re

import pytest

from claudegate.errors import ApiError, AuthenticationError
from claudegate.keys import (
    UNLIMITED_TENANT,
    Identity,
    KeyResolver,
    KeyStoreUnavailableError,
    LimitSet,
    StoredKey,
    TenantSettings,
    display_prefix,
    generate_key,
    hash_key,
    looks_like_key,
    presented_key,
)

ALICE = Identity(org_id=1, org_name="acme", user_id=7, user_name="alice", key_id=3, key_name="ci")


def test_generated_keys_have_the_documented_format() -> None:
    keys = {generate_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert re.fullmatch(r"cg-[A-Za-z0-9_-]{40}", key)
        assert looks_like_key(key)


def test_hash_is_sha256_hex_so_stored_hashes_stay_valid() -> None:
    key = "cg-" + "A" * 40
    assert hash_key(key) == "c792ddfeaee1d514883c1088ccf39cb67e08d462ee4f6e0cd307ef5e4f94c684"
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()


def test_display_prefix_shows_only_the_start() -> None:
    key = generate_key()
    assert display_prefix(key) == key[:10]
    assert display_prefix(key).startswith("cg-")


@pytest.mark.parametrize(
    ("x_api_key", "authorization", "expected"),
    [
        ("cg-x", None, "cg-x"),
        ("cg-x", "Bearer cg-y", "cg-x"),
        (None, "Bearer cg-y", "cg-y"),
        (None, "bearer  cg-y ", "cg-y"),
        (None, "Basic dXNlcjpwYXNz", None),
        (None, "Bearer", None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_presented_key(x_api_key: str | None, authorization: str | None, expected: str | None) -> None:
    assert presented_key(x_api_key, authorization) == expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLookup:
    """An in-memory key store that counts the questions it is asked."""

    def __init__(self) -> None:
        self.keys: dict[str, Identity] = {}
        self.calls = 0
        self.down = False
        self.delay = 0.0

    def add(self, key: str, identity: Identity) -> None:
        self.keys[hash_key(key)] = identity

    async def find_active_key(self, key_hash: str) -> StoredKey | None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise KeyStoreUnavailableError("down")
        identity = self.keys.get(key_hash)
        return StoredKey(key_hash, identity) if identity else None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lookup() -> FakeLookup:
    return FakeLookup()


@pytest.fixture
def resolver(lookup: FakeLookup, clock: FakeClock) -> KeyResolver:
    return KeyResolver(lookup, ttl_s=5.0, clock=clock)


async def test_known_key_resolves_and_is_cached(
    resolver: KeyResolver, lookup: FakeLookup, clock: FakeClock
) -> None:
    key = generate_key()
    lookup.add(key, ALICE)
    assert await resolver.resolve(key) == ALICE
    clock.now += 4.9
    assert await resolver.resolve(key) == ALICE
    assert lookup.calls == 1
    clock.now += 0.2  # past the TTL: ask the store again
    assert await resolver.resolve(key) == ALICE
    assert lookup.calls == 2


async def test_missing_key_is_401_with_anthropics_message(resolver: KeyResolver) -> None:
    with pytest.raises(AuthenticationError, match="x-api-key header is required"):
        await resolver.resolve(None)


async def test_unknown_key_is_401_without_echoing_the_key(resolver: KeyResolver, lookup: FakeLookup) -> None:
    key = generate_key()
    with pytest.raises(AuthenticationError) as caught:
        await resolver.resolve(key)
    assert caught.value.message == "invalid x-api-key"
    assert key not in caught.value.body().decode()
    # asked again within the TTL, the answer comes from the cache
    with pytest.raises(AuthenticationError):
        await resolver.resolve(key)
    assert lookup.calls == 1


async def test_malformed_keys_never_reach_the_store(resolver: KeyResolver, lookup: FakeLookup) -> None:
    for key in ["sk-ant-api03-xyz", "cg-short", "cg-" + "!" * 40]:
        with pytest.raises(AuthenticationError, match="invalid x-api-key"):
            await resolver.resolve(key)
    assert lookup.calls == 0


async def test_forget_key_makes_a_revocation_effective_at_once(
    resolver: KeyResolver, lookup: FakeLookup
) -> None:
    key = generate_key()
    lookup.add(key, ALICE)
    await resolver.resolve(key)
    del lookup.keys[hash_key(key)]  # revoked in the store
    resolver.forget_key(ALICE.key_id)
    with pytest.raises(AuthenticationError):
        await resolver.resolve(key)


async def test_store_outage_serves_known_keys_from_their_stale_entry(
    resolver: KeyResolver, lookup: FakeLookup, clock: FakeClock
) -> None:
    key = generate_key()
    lookup.add(key, ALICE)
    await resolver.resolve(key)
    clock.now += 60
    lookup.down = True
    assert await resolver.resolve(key) == ALICE


async def test_store_outage_for_an_uncached_key_is_a_retryable_500(
    resolver: KeyResolver, lookup: FakeLookup
) -> None:
    lookup.down = True
    with pytest.raises(ApiError, match="retry"):
        await resolver.resolve(generate_key())


async def test_concurrent_misses_for_one_key_share_one_query(
    resolver: KeyResolver, lookup: FakeLookup
) -> None:
    key = generate_key()
    lookup.add(key, ALICE)
    lookup.delay = 0.01
    results = await asyncio.gather(*(resolver.resolve(key) for _ in range(50)))
    assert results == [ALICE] * 50
    assert lookup.calls == 1


async def test_zero_ttl_disables_the_cache(lookup: FakeLookup, clock: FakeClock) -> None:
    resolver = KeyResolver(lookup, ttl_s=0, clock=clock)
    key = generate_key()
    lookup.add(key, ALICE)
    await resolver.resolve(key)
    await resolver.resolve(key)
    assert lookup.calls == 2


def test_limit_sets_and_default_tenant_settings() -> None:
    assert LimitSet().is_unlimited
    assert not LimitSet(max_concurrency=1).is_unlimited
    assert not LimitSet(None, 1000, None).is_unlimited
    assert ALICE.settings is UNLIMITED_TENANT
    assert (UNLIMITED_TENANT.priority, UNLIMITED_TENANT.org_weight, UNLIMITED_TENANT.user_weight) == (
        0,
        1.0,
        1.0,
    )
    assert UNLIMITED_TENANT.deadline_ms is None
    assert UNLIMITED_TENANT.key.is_unlimited
    assert UNLIMITED_TENANT.user.is_unlimited
    assert UNLIMITED_TENANT.org.is_unlimited


class GatedLookup:
    """A store whose query reads its row at once and answers only when released, so a change can land (and
    the cache be cleared) between the read and the answer."""

    def __init__(self, key: str, identity: Identity) -> None:
        self.key_hash = hash_key(key)
        self.identity = identity
        self.release = asyncio.Event()
        self.has_read = asyncio.Event()
        self.calls = 0

    async def find_active_key(self, key_hash: str) -> StoredKey | None:
        self.calls += 1
        read = self.identity
        self.has_read.set()
        await self.release.wait()
        return StoredKey(self.key_hash, read) if key_hash == self.key_hash else None


@pytest.mark.parametrize("forget", ["clear", "forget_key"])
async def test_an_answer_read_before_the_cache_was_cleared_is_not_kept(forget: str) -> None:
    key = generate_key()
    lookup = GatedLookup(key, ALICE)
    resolver = KeyResolver(lookup, ttl_s=60)
    pending = asyncio.create_task(resolver.resolve(key))
    await lookup.has_read.wait()  # the query has read the old row
    changed = Identity(**{**_fields(ALICE), "settings": TenantSettings(priority=5)})
    lookup.identity = changed
    if forget == "clear":
        resolver.clear()
    else:
        resolver.forget_key(ALICE.key_id)
    lookup.release.set()
    assert await pending == ALICE  # that caller gets what was read when it asked
    assert (await resolver.resolve(key)).settings.priority == 5  # the next one asks the store again
    assert lookup.calls == 2


def _fields(identity: Identity) -> dict[str, object]:
    return {name: getattr(identity, name) for name in Identity.__slots__}
