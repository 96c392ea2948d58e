"""Gateway keys: their format, their hash, and resolving a presented key to the identity that owns it.

A gateway key is ``cg-`` followed by 40 URL-safe random characters (240 bits). Only its SHA-256 (hex) is
stored; the plaintext is shown once, when it is created. Because the key is long and random, an unsalted fast
hash is safe here and lets the hash itself be the database index and the cache key.

:class:`KeyResolver` sits on every request's path, so a cache hit costs one SHA-256 and two dict lookups.
A miss asks a :class:`KeyLookup` (the store), and concurrent misses for the same key share one query. Unknown
keys are cached too (a random key cannot be created later, so a negative answer never goes wrong), which keeps
a client retrying with a bad key off the database. If the store cannot answer, a recently known key keeps
working on its stale entry rather than failing every request during a database blip.

An identity carries its tenant's flow-control settings (:class:`TenantSettings`), read in the same query, so
a cache hit also answers "what may this caller do". Settings changed in the database reach a resolver within
its TTL, like a revocation; the admin API calls :meth:`KeyResolver.forget_key` or :meth:`KeyResolver.clear`
so that its own process applies them at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from claudegate.errors import ApiError, AuthenticationError

__all__ = [
    "KEY_PREFIX",
    "NO_BUDGET",
    "UNLIMITED_TENANT",
    "BudgetCaps",
    "Identity",
    "KeyLookup",
    "KeyResolver",
    "KeyStoreUnavailableError",
    "LimitSet",
    "StoredKey",
    "TenantSettings",
    "display_prefix",
    "generate_key",
    "hash_key",
    "looks_like_key",
    "presented_key",
]

KEY_PREFIX: Final = "cg-"
_RANDOM_BYTES: Final = 30  # 30 bytes -> 40 URL-safe base64 characters
_DISPLAY_CHARS: Final = 10  # "cg-" and 7 random characters: enough to tell keys apart, useless to an attacker
_KEY_RE: Final = re.compile(r"cg-[A-Za-z0-9_-]{40}")
_MAX_NEGATIVE: Final = 10_000

MISSING_KEY_MESSAGE: Final = "x-api-key header is required"
INVALID_KEY_MESSAGE: Final = "invalid x-api-key"

logger = logging.getLogger(__name__)


def generate_key() -> str:
    """A new gateway key (plaintext). Show it once; store only :func:`hash_key` of it."""
    return KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a key is stored and looked up."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The first characters of a key, safe to store and show (``cg-AbCdEfG``)."""
    return key[:_DISPLAY_CHARS]


def looks_like_key(key: str) -> bool:
    return _KEY_RE.fullmatch(key) is not None


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key a client presented: ``x-api-key`` first (what the Anthropic SDK sends), then a bearer token."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


@dataclass(frozen=True, slots=True)
class LimitSet:
    """Rate limits of one tenant level (an organisation, a user or a key). None means no limit.

    ``tokens_per_minute`` counts input and output tokens together.
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrency: int | None = None

    @property
    def is_unlimited(self) -> bool:
        return (
            self.requests_per_minute is None
            and self.tokens_per_minute is None
            and self.max_concurrency is None
        )


@dataclass(frozen=True, slots=True)
class BudgetCaps:
    """Spending caps of one tenant level (an organisation or a user) per UTC day and calendar month, in tokens
    (every input token, cached or not, and every output token) and in US dollars. None means no cap."""

    daily_tokens: int | None = None
    monthly_tokens: int | None = None
    daily_usd: float | None = None
    monthly_usd: float | None = None

    @property
    def is_unlimited(self) -> bool:
        return (
            self.daily_tokens is None
            and self.monthly_tokens is None
            and self.daily_usd is None
            and self.monthly_usd is None
        )


NO_BUDGET: Final = BudgetCaps()


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """The flow-control settings that apply to a call made with a key.

    ``key``, ``user`` and ``org`` are the limits of each level (a call must fit all three; a key without a
    user has an unlimited ``user`` level). ``deadline_ms`` is the key's default deadline for its calls (None:
    no default; a call may still set its own). ``priority``: higher goes first, 0 by default. The weights
    share capacity between organisations, and between the users of one organisation (1.0 by default).
    ``org_budget`` and ``user_budget`` cap what the organisation and the user spend per day and month.
    """

    key: LimitSet = LimitSet()
    user: LimitSet = LimitSet()
    org: LimitSet = LimitSet()
    deadline_ms: int | None = None
    priority: int = 0
    org_weight: float = 1.0
    user_weight: float = 1.0
    org_budget: BudgetCaps = NO_BUDGET
    user_budget: BudgetCaps = NO_BUDGET


UNLIMITED_TENANT: Final = TenantSettings()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: the organisation, the user (if the key belongs to one) and the key, and the
    flow-control settings that apply to them. ``can_act_for_users``: the key may name an end user of its
    organisation (the chat API's ``x-user-id``) and act as that user. ``cache_replies``: the key's own
    response-cache choice (None: its organisation's)."""

    org_id: int
    org_name: str
    user_id: int | None
    user_name: str | None
    key_id: int
    key_name: str
    settings: TenantSettings = UNLIMITED_TENANT
    can_act_for_users: bool = False
    cache_replies: bool | None = None


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An active key as the store found it: its stored hash and its owner."""

    key_hash: str
    identity: Identity


class KeyStoreUnavailableError(Exception):
    """The key store could not answer (database down or unreachable)."""


class KeyLookup(Protocol):
    async def find_active_key(self, key_hash: str) -> StoredKey | None:
        """The active (not revoked) key with this hash; KeyStoreUnavailableError if the store is down."""
        ...


_Entry = tuple[Identity | None, float]  # (identity or None for "no such key", expiry on the resolver's clock)


class KeyResolver:
    """Resolve presented keys to identities with a TTL cache in front of the store."""

    __slots__ = ("_clock", "_generation", "_known", "_loading", "_lookup", "_ttl", "_unknown")

    def __init__(
        self, lookup: KeyLookup, *, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl_s
        self._clock = clock
        self._known: dict[str, _Entry] = {}
        self._unknown: dict[str, float] = {}
        self._loading: dict[str, asyncio.Task[Identity | None]] = {}
        # Bumped by forget_key and clear: a query that started before either may have read the old row, so
        # its answer is returned to its callers but not cached.
        self._generation = 0

    async def resolve(self, key: str | None) -> Identity:
        """The identity owning ``key``; raises AuthenticationError (401) for a missing, unknown or revoked key
        and ApiError (500) when the key is not cached and the store cannot be reached."""
        if not key:
            raise AuthenticationError(MISSING_KEY_MESSAGE)
        if not looks_like_key(key):
            raise AuthenticationError(INVALID_KEY_MESSAGE)
        key_hash = hash_key(key)
        now = self._clock()
        entry = self._known.get(key_hash)
        if entry is not None and entry[1] > now:
            identity = entry[0]
        elif key_hash in self._unknown and self._unknown[key_hash] > now:
            identity = None
        else:
            identity = await self._load(key_hash)
        if identity is None:
            raise AuthenticationError(INVALID_KEY_MESSAGE)
        return identity

    def forget_key(self, key_id: int) -> None:
        """Drop a key from the cache (call it when the key is revoked or its settings change) so the next use
        asks the store."""
        self._generation += 1
        for key_hash, (identity, _expiry) in list(self._known.items()):
            if identity is not None and identity.key_id == key_id:
                del self._known[key_hash]

    def clear(self) -> None:
        """Drop every cached answer (call it when an organisation's or a user's settings change, which
        touches all their keys) so that each key's next use asks the store."""
        self._generation += 1
        self._known.clear()
        self._unknown.clear()

    async def _load(self, key_hash: str) -> Identity | None:
        # The query runs as its own task so that concurrent misses share it and a caller that gives up
        # (cancelled by its client) does not cancel it for the others.
        task = self._loading.get(key_hash)
        if task is None:
            task = asyncio.create_task(self._query(key_hash))
            self._loading[key_hash] = task
            task.add_done_callback(lambda _done: self._loading.pop(key_hash, None))
        return await asyncio.shield(task)

    async def _query(self, key_hash: str) -> Identity | None:
        generation = self._generation
        try:
            stored = await self._lookup.find_active_key(key_hash)
        except KeyStoreUnavailableError:
            stale = self._known.get(key_hash)
            if stale is not None and stale[0] is not None:
                logger.warning("key store unavailable; using the cached identity of key %s", stale[0].key_id)
                return stale[0]
            raise ApiError("the gateway cannot check API keys right now; retry shortly") from None
        # The store found the row through an index on the hash; comparing again in constant time costs
        # nothing and keeps the check independent of how the store matched it.
        found = stored is not None and hmac.compare_digest(stored.key_hash, key_hash)
        identity = stored.identity if stored is not None and found else None
        if generation != self._generation:
            # The cache was cleared while this query ran, so the row it read may predate the change that
            # caused it: answer this once but do not keep it.
            return identity
        expiry = self._clock() + self._ttl
        if identity is None:
            self._known.pop(key_hash, None)
            if len(self._unknown) >= _MAX_NEGATIVE:
                self._unknown.clear()
            self._unknown[key_hash] = expiry
            return None
        self._unknown.pop(key_hash, None)
        self._known[key_hash] = (identity, expiry)
        return identity
