"""``FlowState`` on Redis, for several gateway processes that serve one Anthropic account.

Token buckets cost no trip to Redis on most calls: a process takes *allotments* of a comfortably full bucket
(a slice of its refill, in the same atomic script as a take it must make anyway) and spends them locally;
settlements (charges, upstream-observed levels, allotment spent or given back) go in batches, flushed from
the event loop every ``flush_s`` (50 ms) and at ``close``. The shared bucket counts what it lent, so the
processes together can never take more than it allows (``allotment`` says why). A bucket short of tokens
is asked every time, as before: under overload each take is one atomic script, and the processes share the
refill.

Every operation is one Lua script (``redis_scripts``), so a check-and-take across several buckets is atomic.
Time comes from the Redis server (``TIME``), not from each process, so processes with drifting clocks agree
on refills. Keys expire once a bucket would be full again (or a slot holder is long gone), so Redis holds
only what is in use. Concurrency slots, flags, counters and shared queue lengths are one script per
operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from claudegate.flow import redis_scripts as scripts
from claudegate.flow.allotment import Allotments, BucketReport
from claudegate.flow.state import BucketSpec, CounterSpec

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisState"]

logger = logging.getLogger(__name__)

# A lease lives this much longer in Redis than its holder spends from it, so a holder's slow reply from
# Redis never leaves it spending tokens the bucket no longer counts as lent.
_LEASE_MARGIN_S = 1.0
# What close may take at most: half to give allotments back, half to disconnect.
_CLOSE_S = 1.0


class RedisState:
    """``FlowState`` on Redis. Create with ``RedisState.from_url(url)``; keys are prefixed with ``prefix``."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "claudegate:",
        slot_ttl_s: int = 900,
        lease_s: float = 1.0,
        slice_s: float = 0.25,
        flush_s: float = 0.05,
        shared_clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        # The clock of times told to other processes (kept turns, ``shared_turns``): the wall clock, which
        # processes on different hosts agree on; a test of several queues on one loop gives the loop's.
        self.shared_clock = shared_clock
        self._prefix = prefix
        self._slot_ttl = slot_ttl_s
        self._sync = client.register_script(scripts.SYNC)
        self._levels = client.register_script(scripts.LEVELS)
        self._acquire = client.register_script(scripts.ACQUIRE)
        self._release = client.register_script(scripts.RELEASE)
        self._try_count = client.register_script(scripts.TRY_COUNT)
        self._count = client.register_script(scripts.COUNT)
        self._share_demand = client.register_script(scripts.SHARE_DEMAND)
        # This process's name in the buckets' leases: unique even for two states in one process.
        self.member = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._allotments = Allotments(lease_s=lease_s, slice_s=slice_s)
        self._lease_ttl = lease_s + _LEASE_MARGIN_S
        self._flush_s = flush_s
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, max_connections: int = 64, **kwargs: Any) -> RedisState:
        """Connect through a blocking pool: under a burst, operations wait a moment for a free connection
        instead of failing (the default pool raises once its connections are all in use)."""
        from redis.asyncio import BlockingConnectionPool, Redis

        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=10, decode_responses=True
        )
        return cls(Redis(connection_pool=pool), **kwargs)

    def _key(self, name: str) -> str:
        return self._prefix + name

    def key(self, name: str) -> str:
        """The Redis key of ``name`` under this state's prefix (for other flow modules' own keys)."""
        return self._prefix + name

    @property
    def client(self) -> Redis:
        """The Redis client, for flow modules that keep keys of their own (``shared_turns``)."""
        return self._redis

    async def try_take(self, demands: Sequence[tuple[BucketSpec, float]], headroom_s: float = 0.0) -> float:
        if not demands:
            return 0.0
        takes: list[tuple[BucketSpec, float]] = []
        for spec, amount in demands:
            if amount > spec.capacity:
                return math.inf
            takes.append((spec, spec.reserve(amount, headroom_s)[1]))
        now = _now()
        allotments = self._allotments
        if allotments.take(takes, now):
            self._schedule_flush()  # what was spent is reported with the next batch
            return 0.0
        missing = allotments.spend_what_is_held(takes, now)
        keys = [spec.key for spec, _ in demands]
        reports = {report.spec.key: report for report in allotments.reports(now, keys=keys)}
        args: list[str | float | int] = [self.member, self._lease_ttl, len(demands), "take"]
        for (spec, amount), (_, taken), short in zip(demands, takes, missing, strict=True):
            report = reports.get(spec.key) or BucketReport(spec)
            needed, _ = spec.reserve(amount, headroom_s)
            kept = needed - amount  # what stays behind in the bucket
            along = taken - amount  # the part of the reserve a small bucket takes along
            args.extend(_report_args(report))
            args.extend(
                (
                    max(0.0, short - along) + kept if short > 0 else 0.0,
                    short,
                    kept,
                    allotments.want(spec) if amount > 0 else 0.0,
                    max(amount, 1e-9),
                )
            )

        def settle(result: list[str] | None) -> None:
            if result is None:  # not sent: nothing changed in Redis
                allotments.restore(takes, missing)
                allotments.unsent(list(reports.values()))
            elif float(result[0]) > 0:
                allotments.restore(takes, missing)
            else:
                allotments.spent(takes, missing)
                for index, (spec, _) in enumerate(demands):
                    allotments.granted(spec, float(result[1 + index]), now)
                self._schedule_flush()

        result = await self._run_sync([self._key(key) for key in keys], args, settle)
        return float(result[0])

    async def _run_sync(
        self, keys: list[str], args: list[str | float | int], settle: Callable[[list[str] | None], None]
    ) -> list[str]:
        """Run the sync script, then ``settle`` this process's books with its result (None: it failed)
        even if the caller is cancelled meanwhile: the script may have run, and what it took and what it
        was told must be counted once, never twice or not at all."""
        call = asyncio.ensure_future(self._sync(keys=keys, args=args))

        def done(finished: asyncio.Future[list[str]]) -> None:
            failed = finished.cancelled() or finished.exception() is not None
            settle(None if failed else finished.result())

        call.add_done_callback(done)
        result: list[str] = await asyncio.shield(call)
        return result

    async def charge(self, spec: BucketSpec, amount: float) -> None:
        self._allotments.charge(spec, amount, _now())
        self._schedule_flush()

    async def observe(self, spec: BucketSpec, remaining: float) -> None:
        self._allotments.observe(spec, remaining)
        self._schedule_flush()

    async def levels(self, specs: Sequence[BucketSpec]) -> list[float]:
        """The shared levels plus what this process holds of them (its allotments), after its pending
        settlements of these buckets."""
        if not specs:
            return []
        now = _now()
        keys = [self._key(spec.key) for spec in specs]
        reports = {
            report.spec.key: report for report in self._allotments.reports(now, keys=[s.key for s in specs])
        }
        if reports:
            args: list[str | float | int] = [self.member, self._lease_ttl, len(specs), "sync"]
            for spec in specs:
                args.extend(_report_args(reports.get(spec.key) or BucketReport(spec)))
                args.extend((0.0, 0.0, 0.0, 0.0, 0.0))

            def settle(result: list[str] | None) -> None:
                if result is None:
                    self._allotments.unsent(list(reports.values()))

            result = await self._run_sync(keys, args, settle)
            shared = [float(level) for level in result[1 + len(specs) :]]
        else:
            args = [len(specs)]
            for spec in specs:
                args.extend((spec.capacity, spec.rate))
            shared = [float(level) for level in await self._levels(keys=keys, args=args)]
        return [
            level + self._allotments.held(spec.key, now) for level, spec in zip(shared, specs, strict=True)
        ]

    # -- batches ---------------------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._closed:
            return
        if self._flush_timer is None and (self._flushing is None or self._flushing.done()):
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(self._flush_s, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_timer = None
        self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self, *, everything: bool = False) -> None:
        """Send every pending settlement, and give back expired allotments (all, with ``everything``), in
        one script; then look again when the next allotment expires."""
        now = _now()
        reports = self._allotments.reports(now, everything=everything)
        if reports:
            args: list[str | float | int] = [self.member, self._lease_ttl, len(reports), "sync"]
            for report in reports:
                args.extend(_report_args(report))
                args.extend((0.0, 0.0, 0.0, 0.0, 0.0))
            try:
                await self._sync(keys=[self._key(report.spec.key) for report in reports], args=args)
            except Exception:
                self._allotments.unsent(reports)
                if everything:
                    raise
                logger.warning("could not report settlements to Redis; trying again", exc_info=True)
        if everything:
            return
        self._flushing = None
        expiry = self._allotments.next_expiry()
        if self._allotments.busy and self._flush_timer is None and not self._closed:
            delay = self._flush_s
            if not self._allotments.has_reports and expiry is not None:
                delay = max(self._flush_s, expiry - _now())
            self._flush_timer = asyncio.get_running_loop().call_later(delay, self._start_flush)

    async def acquire(self, key: str, limit: int) -> bool:
        return bool(await self._acquire(keys=[self._key("slots:" + key)], args=[limit, self._slot_ttl]))

    async def release(self, key: str) -> None:
        await self._release(keys=[self._key("slots:" + key)])

    async def trip(self, key: str, seconds: float) -> None:
        if seconds <= 0:
            await self._redis.delete(self._key("flag:" + key))
        else:
            await self._redis.set(self._key("flag:" + key), "1", px=max(1, round(seconds * 1000)))

    async def tripped(self, key: str) -> float:
        remaining_ms = await self._redis.pttl(self._key("flag:" + key))
        return max(0.0, remaining_ms / 1000) if remaining_ms > 0 else 0.0

    def _counter(self, spec: CounterSpec) -> str:
        return self._key("count:" + spec.key)

    async def try_count(self, demands: Sequence[tuple[CounterSpec, float, float]]) -> int:
        if not demands:
            return -1
        args: list[float | int | str] = [len(demands)]
        for spec, amount, cap in demands:
            args.extend((repr(float(amount)), repr(float(cap)), math.ceil(spec.expires_at)))
        keys = [self._counter(spec) for spec, _, _ in demands]
        return int(await self._try_count(keys=keys, args=args))

    async def count(self, spec: CounterSpec, amount: float) -> float:
        total = await self._count(
            keys=[self._counter(spec)], args=[repr(float(amount)), math.ceil(spec.expires_at)]
        )
        return float(total)

    async def counts(self, specs: Sequence[CounterSpec]) -> list[float]:
        if not specs:
            return []
        values = await self._redis.mget([self._counter(spec) for spec in specs])
        return [float(value) if value is not None else 0.0 for value in values]

    async def share_demand(
        self, key: str, member: str, amounts: Sequence[float], ttl_s: float
    ) -> list[list[float]]:
        args: list[str | float] = [member, ttl_s, *(repr(float(amount)) for amount in amounts)]
        others = await self._share_demand(keys=[self._key("demand:" + key)], args=args)
        return [[float(amount) for amount in record.split(",")] for record in others]

    async def close(self, *, timeout_s: float = _CLOSE_S) -> None:
        """Give back every allotment and send what is pending, then disconnect; within ``timeout_s``
        whatever Redis does (an allotment not given back is freed when its lease expires, ``lease_s``)."""
        self._closed = True  # no flush is scheduled from now on: a late one would reconnect
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        try:
            async with asyncio.timeout(timeout_s / 2):
                if self._flushing is not None:
                    with contextlib.suppress(Exception):
                        await self._flushing
                await self._flush(everything=True)
        except Exception:  # TimeoutError included: Redis too slow to answer
            logger.warning("could not give allotments back to Redis at shutdown", exc_info=True)
        try:
            async with asyncio.timeout(timeout_s / 2):
                await self._redis.aclose(close_connection_pool=True)
        except Exception:
            # The connections close with the process; waiting for Redis to see them closed is not needed.
            logger.warning("could not close the connections to Redis at shutdown", exc_info=True)


def _now() -> float:
    return asyncio.get_running_loop().time()


def _report_args(report: BucketReport) -> tuple[float, float, float, float, float, str]:
    spec = report.spec
    observed = "" if report.observed is None else repr(float(report.observed))
    return (spec.capacity, spec.rate, report.used, report.give, report.charge, observed)
