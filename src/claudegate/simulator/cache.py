"""Prompt caching as the API accounts for it.

Each cache breakpoint names a prefix (tools → system → messages up to that block). A request reads the
longest prefix already cached, looking back up to 20 blocks from each breakpoint; it writes an entry for
every breakpoint whose prefix reaches the model's minimum cacheable length. Entries live 5 minutes or one
hour, refreshed at no cost on every hit, and are private to the organisation (here: the API key).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from claudegate.simulator.prompt import Prompt

__all__ = ["CacheLookup", "CacheUsage", "PromptCache"]

_LOOKBACK_BLOCKS = 20
_TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}


@dataclass(frozen=True, slots=True)
class CacheUsage:
    input_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.cache_creation_5m_input_tokens + self.cache_creation_1h_input_tokens


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """What a request would read and write; nothing changes in the cache until it is committed."""

    usage: CacheUsage
    hit: bytes | None = None  # the digest of the entry read, refreshed on commit
    writes: tuple[tuple[bytes, float], ...] = ()  # (digest, ttl seconds) stored on commit


class PromptCache:
    """Cache entries per owner. ``lookup`` then ``commit``: a request refused after the lookup (a 429) must
    neither write entries nor refresh them, as it never reached the model."""

    __slots__ = ("_clock", "_entries", "_max_entries")

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, bytes], tuple[float, float]] = {}  # -> (expires_at, ttl seconds)
        self._max_entries = max_entries

    def lookup(self, owner: str, prompt: Prompt, min_cache_tokens: int) -> CacheLookup:
        """Split the prompt's input tokens into uncached, read and written."""
        if not prompt.breakpoints:
            return CacheLookup(CacheUsage(input_tokens=prompt.total_tokens))
        now = self._clock()
        prefix = _running_sum(prompt.segment_tokens)

        hit_segment = -1
        for breakpoint in prompt.breakpoints:
            low = max(0, breakpoint.segment - _LOOKBACK_BLOCKS + 1)
            for segment in range(breakpoint.segment, low - 1, -1):
                if segment <= hit_segment:
                    break
                if self._live(owner, prompt.segment_digests[segment], now):
                    hit_segment = segment
                    break
        read = prefix[hit_segment] if hit_segment >= 0 else 0

        written = {"5m": 0, "1h": 0}
        writes: list[tuple[bytes, float]] = []
        covered = read
        for breakpoint in prompt.breakpoints:
            length = prefix[breakpoint.segment]
            if length < min_cache_tokens:
                continue
            if length > covered:
                written[breakpoint.ttl] += length - covered
                covered = length
            writes.append((prompt.segment_digests[breakpoint.segment], _TTL_SECONDS[breakpoint.ttl]))

        usage = CacheUsage(
            input_tokens=prompt.total_tokens - covered,
            cache_read_input_tokens=read,
            cache_creation_5m_input_tokens=written["5m"],
            cache_creation_1h_input_tokens=written["1h"],
        )
        hit = prompt.segment_digests[hit_segment] if hit_segment >= 0 else None
        return CacheLookup(usage, hit, tuple(writes))

    def commit(self, owner: str, lookup: CacheLookup) -> None:
        """Refresh the entry read (a hit extends its lifetime at no cost) and store the entries written."""
        if lookup.hit is None and not lookup.writes:
            return
        now = self._clock()
        if lookup.hit is not None:
            entry = self._entries.get((owner, lookup.hit))
            if entry is not None:
                self._entries[(owner, lookup.hit)] = (max(entry[0], now + entry[1]), entry[1])
        for digest, ttl in lookup.writes:
            self._store(owner, digest, now, ttl)

    def apply(self, owner: str, prompt: Prompt, min_cache_tokens: int) -> CacheUsage:
        """Look up and commit at once, for requests that cannot be refused in between (batches)."""
        found = self.lookup(owner, prompt, min_cache_tokens)
        self.commit(owner, found)
        return found.usage

    def _live(self, owner: str, digest: bytes, now: float) -> bool:
        entry = self._entries.get((owner, digest))
        return entry is not None and entry[0] > now

    def _store(self, owner: str, digest: bytes, now: float, ttl: float) -> None:
        if len(self._entries) >= self._max_entries:
            self._evict(now)
        current = self._entries.get((owner, digest))
        if current is None or current[0] < now + ttl:
            self._entries[(owner, digest)] = (now + ttl, ttl)

    def _evict(self, now: float) -> None:
        expired = [key for key, (expires_at, _) in self._entries.items() if expires_at <= now]
        for key in expired:
            del self._entries[key]
        if len(self._entries) >= self._max_entries:
            # Still full of live entries: drop the oldest half (insertion order) rather than grow forever.
            for key in list(self._entries)[: self._max_entries // 2]:
                del self._entries[key]


def _running_sum(values: list[int]) -> list[int]:
    total = 0
    sums = []
    for value in values:
        total += value
        sums.append(total)
    return sums
