"""Shared flow-control state behind one small interface: token buckets, concurrency slots, flags and
period counters (budgets).

Two implementations: ``MemoryState`` (one process, the default) and ``RedisState`` (several gateway processes
serving one account; every operation is one atomic Lua script). Buckets are continuously refilled token
buckets (see ``bucket.py``); a bucket's capacity and refill rate travel with each call as a ``BucketSpec``,
so a limit corrected from an upstream's headers takes effect at once everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from claudegate.flow.bucket import TokenBucket

__all__ = ["BucketSpec", "CounterSpec", "FlowState", "MemoryState"]


@dataclass(frozen=True, slots=True)
class BucketSpec:
    key: str
    capacity: float
    rate: float  # tokens per second

    @classmethod
    def per_minute(cls, key: str, limit: float, burst: float = 1.0) -> BucketSpec:
        """A bucket for a per-minute limit; ``burst`` is its capacity as a share of a minute's allowance."""
        return cls(key, max(1.0, limit * burst), limit / 60.0)

    def reserve(self, amount: float, seconds: float) -> tuple[float, float]:
        """Taking ``amount`` with ``seconds`` of refill in reserve: the level it needs, and what it takes.

        The reserve stays in the bucket if the bucket can hold it beside the amount; what it cannot hold is
        taken along with the amount, so that the next take waits for it instead.
        """
        reserve = self.rate * seconds
        kept = max(0.0, min(reserve, self.capacity - amount))
        return amount + kept, amount + reserve - kept


@dataclass(frozen=True, slots=True)
class CounterSpec:
    """A counter that accumulates over a period (a day's spend): it is dropped at ``expires_at``, a wall-clock
    time (``time.time()``), so its key should name the period (a new period then starts from zero)."""

    key: str
    expires_at: float


class FlowState(Protocol):
    async def try_take(self, demands: Sequence[tuple[BucketSpec, float]], headroom_s: float = 0.0) -> float:
        """Take every amount if all are available now and return 0; otherwise take nothing and return the
        seconds until all would be (``inf`` if an amount exceeds its bucket's capacity). With ``headroom_s``,
        each take keeps that many seconds of refill in reserve (``BucketSpec.reserve``)."""
        ...

    async def charge(self, spec: BucketSpec, amount: float) -> None:
        """Take ``amount`` unconditionally (a debt is allowed); a negative amount gives tokens back."""
        ...

    async def observe(self, spec: BucketSpec, remaining: float) -> None:
        """Lower a bucket to what the upstream reports as remaining (never raise it: others may share it)."""
        ...

    async def levels(self, specs: Sequence[BucketSpec]) -> list[float]:
        """Current levels (for predictions and metrics)."""
        ...

    async def acquire(self, key: str, limit: int) -> bool:
        """Take one of ``limit`` concurrency slots; False when all are taken."""
        ...

    async def release(self, key: str) -> None: ...

    async def trip(self, key: str, seconds: float) -> None:
        """Raise a flag that lowers itself after ``seconds`` (an open circuit breaker, shared); a new call
        replaces the old time, so ``trip(key, 0)`` lowers it."""
        ...

    async def tripped(self, key: str) -> float:
        """Seconds until the flag lowers itself; 0 when it is down."""
        ...

    async def try_count(self, demands: Sequence[tuple[CounterSpec, float, float]]) -> int:
        """For (counter, amount, cap) demands: if every counter plus its amount stays within its cap, add
        every amount and return -1; otherwise add nothing and return the index of the first that would not."""
        ...

    async def count(self, spec: CounterSpec, amount: float) -> float:
        """Add ``amount`` to a counter unconditionally (negative: take some back); return its new total."""
        ...

    async def counts(self, specs: Sequence[CounterSpec]) -> list[float]:
        """The counters' totals (0 for one never counted or expired)."""
        ...

    async def share_demand(
        self, key: str, member: str, amounts: Sequence[float], ttl_s: float
    ) -> list[list[float]]:
        """Record that ``member`` (one gateway process) has ``amounts`` queued under ``key``, for ``ttl_s``
        seconds unless recorded again (all zero: nothing), and return what each of the other members has
        queued."""
        ...

    async def close(self) -> None: ...


class MemoryState:
    """In-process state; the clock is injected so tests move time instead of sleeping."""

    __slots__ = ("_buckets", "_clock", "_counters", "_demands", "_flags", "_slots", "_wall_clock")

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock  # for counters, which expire at wall-clock times
        self._buckets: dict[str, TokenBucket] = {}
        self._slots: dict[str, int] = {}
        self._flags: dict[str, float] = {}
        self._counters: dict[str, tuple[float, float]] = {}  # key -> (total, expires_at)
        # What gateway processes (members) have queued: key -> member -> (amounts, until when)
        self._demands: dict[str, dict[str, tuple[list[float], float]]] = {}

    def _bucket(self, spec: BucketSpec, now: float) -> TokenBucket:
        bucket = self._buckets.get(spec.key)
        if bucket is None:
            bucket = self._buckets[spec.key] = TokenBucket(spec.capacity, spec.rate, now)
        elif bucket.capacity != spec.capacity or bucket.rate != spec.rate:
            bucket.level(now)  # settle the refill at the old rate before the limit changes
            bucket.capacity, bucket.rate = spec.capacity, spec.rate
        return bucket

    async def try_take(self, demands: Sequence[tuple[BucketSpec, float]], headroom_s: float = 0.0) -> float:
        now = self._clock()
        buckets = [(self._bucket(spec, now), amount) for spec, amount in demands]
        reserves = [spec.reserve(amount, headroom_s) for spec, amount in demands]
        wait = max(
            (
                bucket.wait_for(needed, now)
                for (bucket, _), (needed, _) in zip(buckets, reserves, strict=True)
            ),
            default=0.0,
        )
        if wait > 0:
            return wait
        for (bucket, _), (_, taken) in zip(buckets, reserves, strict=True):
            bucket.charge(taken, now)
        return 0.0

    async def charge(self, spec: BucketSpec, amount: float) -> None:
        now = self._clock()
        bucket = self._bucket(spec, now)
        bucket.charge(amount, now)
        if bucket.level(now) > bucket.capacity:
            bucket.charge(bucket.level(now) - bucket.capacity, now)

    async def observe(self, spec: BucketSpec, remaining: float) -> None:
        now = self._clock()
        bucket = self._bucket(spec, now)
        excess = bucket.level(now) - remaining
        if excess > 0:
            bucket.charge(excess, now)

    async def levels(self, specs: Sequence[BucketSpec]) -> list[float]:
        now = self._clock()
        return [self._bucket(spec, now).level(now) for spec in specs]

    async def acquire(self, key: str, limit: int) -> bool:
        used = self._slots.get(key, 0)
        if used >= limit:
            return False
        self._slots[key] = used + 1
        return True

    async def release(self, key: str) -> None:
        used = self._slots.get(key, 0)
        if used <= 1:
            self._slots.pop(key, None)
        else:
            self._slots[key] = used - 1

    async def trip(self, key: str, seconds: float) -> None:
        self._flags[key] = self._clock() + seconds

    async def tripped(self, key: str) -> float:
        until = self._flags.get(key)
        if until is None:
            return 0.0
        remaining = until - self._clock()
        if remaining <= 0:
            del self._flags[key]
            return 0.0
        return remaining

    def _total(self, spec: CounterSpec, now: float) -> float:
        entry = self._counters.get(spec.key)
        if entry is None:
            return 0.0
        if entry[1] <= now:
            del self._counters[spec.key]
            return 0.0
        return entry[0]

    async def try_count(self, demands: Sequence[tuple[CounterSpec, float, float]]) -> int:
        now = self._wall_clock()
        totals = [self._total(spec, now) for spec, _, _ in demands]
        for index, ((_, amount, cap), total) in enumerate(zip(demands, totals, strict=True)):
            if total + amount > cap:
                return index
        for (spec, amount, _), total in zip(demands, totals, strict=True):
            self._counters[spec.key] = (total + amount, spec.expires_at)
        return -1

    async def count(self, spec: CounterSpec, amount: float) -> float:
        total = self._total(spec, self._wall_clock()) + amount
        self._counters[spec.key] = (total, spec.expires_at)
        return total

    async def counts(self, specs: Sequence[CounterSpec]) -> list[float]:
        now = self._wall_clock()
        return [self._total(spec, now) for spec in specs]

    async def share_demand(
        self, key: str, member: str, amounts: Sequence[float], ttl_s: float
    ) -> list[list[float]]:
        now = self._clock()
        members = self._demands.setdefault(key, {})
        if any(amounts):
            members[member] = (list(amounts), now + ttl_s)
        else:
            members.pop(member, None)
        others: list[list[float]] = []
        for name, (queued, until) in list(members.items()):
            if until <= now:
                del members[name]
            elif name != member:
                others.append(list(queued))
        return others

    async def close(self) -> None:
        return None
