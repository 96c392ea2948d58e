"""``FlowState`` on Redis, for several gateway processes that serve one Anthropic account.

Every operation is one Lua script, so a check-and-take across several buckets is atomic. Time comes from
the Redis server (``TIME``), not from each process, so processes with drifting clocks agree on refills.
Keys expire once a bucket would be full again (or a slot holder is long gone), so Redis holds only what is
in use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from claudegate.flow.state import BucketSpec, CounterSpec

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisState"]

# Shared prologue: refill bucket i (KEYS[i], capacity and rate in ARGV) to the server's current time.
_REFILL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function refill(key, capacity, rate)
  local state = redis.call('HMGET', key, 'level', 'updated')
  local level = tonumber(state[1])
  local updated = tonumber(state[2])
  if level == nil then
    level = capacity
  elseif now > updated then
    level = math.min(capacity, level + (now - updated) * rate)
  end
  return level
end
local function store(key, level, capacity, rate)
  redis.call('HSET', key, 'level', tostring(level), 'updated', tostring(now))
  local ttl = math.ceil((capacity - level) / rate) + 60
  redis.call('EXPIRE', key, ttl)
end
"""

# ARGV: n, headroom in seconds, then (capacity, rate, amount) per bucket. Returns "0" or the wait in seconds
# as a string.
_TRY_TAKE = (
    _REFILL
    + """
local n = tonumber(ARGV[1])
local headroom = tonumber(ARGV[2])
local levels = {}
local takes = {}
local wait = 0
for i = 1, n do
  local capacity = tonumber(ARGV[3 + (i - 1) * 3])
  local rate = tonumber(ARGV[4 + (i - 1) * 3])
  local amount = tonumber(ARGV[5 + (i - 1) * 3])
  local level = refill(KEYS[i], capacity, rate)
  levels[i] = level
  if amount > capacity then
    return 'inf'
  end
  local kept = math.max(0, math.min(rate * headroom, capacity - amount))
  takes[i] = amount + rate * headroom - kept
  if level < amount + kept then
    wait = math.max(wait, (amount + kept - level) / rate)
  end
end
if wait > 0 then
  return tostring(wait)
end
for i = 1, n do
  local capacity = tonumber(ARGV[3 + (i - 1) * 3])
  local rate = tonumber(ARGV[4 + (i - 1) * 3])
  store(KEYS[i], levels[i] - takes[i], capacity, rate)
end
return '0'
"""
)

# ARGV: capacity, rate, amount, mode ('charge' or 'observe'). Returns the new level.
_ADJUST = (
    _REFILL
    + """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local level = refill(KEYS[1], capacity, rate)
if ARGV[4] == 'charge' then
  level = math.min(capacity, level - amount)
elseif amount < level then
  level = amount
end
store(KEYS[1], level, capacity, rate)
return tostring(level)
"""
)

_LEVEL = (
    _REFILL
    + """
return tostring(refill(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])))
"""
)

# Concurrency slots: a counter with a safety expiry, so a crashed process cannot hold slots forever.
_ACQUIRE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
  return 0
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

_RELEASE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used <= 1 then
  redis.call('DEL', KEYS[1])
else
  redis.call('DECR', KEYS[1])
end
return 1
"""


# Period counters (budgets). ARGV: n, then (amount, cap, expires_at as whole Unix seconds) per counter.
# Returns -1 when every amount was added, else the 0-based index of the first counter that would pass its cap.
_TRY_COUNT = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local amount = tonumber(ARGV[2 + (i - 1) * 3])
  local cap = tonumber(ARGV[3 + (i - 1) * 3])
  local total = tonumber(redis.call('GET', KEYS[i]) or '0')
  if total + amount > cap then
    return i - 1
  end
end
for i = 1, n do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[2 + (i - 1) * 3])
  redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[4 + (i - 1) * 3]))
end
return -1
"""

# ARGV: amount, expires_at. Returns the new total as a string.
_COUNT = """
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[2]))
return total
"""


# KEYS[1]: the hash of what each member has queued ("until,amount,amount..."). ARGV: member, ttl in seconds,
# then the member's amounts. Records them (or removes the member when all are 0), drops expired members, and
# returns the other members' records (without their times).
_SHARE_DEMAND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local member = ARGV[1]
local ttl = tonumber(ARGV[2])
local queued = false
for i = 3, #ARGV do
  if tonumber(ARGV[i]) ~= 0 then queued = true end
end
if queued then
  local fields = {tostring(now + ttl)}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], member, table.concat(fields, ','))
  redis.call('EXPIRE', KEYS[1], math.ceil(ttl) + 1)
else
  redis.call('HDEL', KEYS[1], member)
end
local others = {}
local all = redis.call('HGETALL', KEYS[1])
for j = 1, #all, 2 do
  local until_, amounts = string.match(all[j + 1], '^([^,]+),?(.*)$')
  if tonumber(until_) <= now then
    redis.call('HDEL', KEYS[1], all[j])
  elseif all[j] ~= member then
    others[#others + 1] = amounts
  end
end
return others
"""


class RedisState:
    """``FlowState`` on Redis. Create with ``RedisState.from_url(url)``; keys are prefixed with ``prefix``."""

    def __init__(self, client: Redis, *, prefix: str = "claudegate:", slot_ttl_s: int = 900) -> None:
        self._redis = client
        self._prefix = prefix
        self._slot_ttl = slot_ttl_s
        self._try_take = client.register_script(_TRY_TAKE)
        self._adjust = client.register_script(_ADJUST)
        self._level = client.register_script(_LEVEL)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._try_count = client.register_script(_TRY_COUNT)
        self._count = client.register_script(_COUNT)
        self._share_demand = client.register_script(_SHARE_DEMAND)

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

    async def try_take(self, demands: Sequence[tuple[BucketSpec, float]], headroom_s: float = 0.0) -> float:
        if not demands:
            return 0.0
        keys = [self._key(spec.key) for spec, _ in demands]
        args: list[float | int] = [len(demands), headroom_s]
        for spec, amount in demands:
            args.extend((spec.capacity, spec.rate, amount))
        result = await self._try_take(keys=keys, args=args)
        return math.inf if result == "inf" else float(result)

    async def charge(self, spec: BucketSpec, amount: float) -> None:
        await self._adjust(keys=[self._key(spec.key)], args=[spec.capacity, spec.rate, amount, "charge"])

    async def observe(self, spec: BucketSpec, remaining: float) -> None:
        await self._adjust(keys=[self._key(spec.key)], args=[spec.capacity, spec.rate, remaining, "observe"])

    async def levels(self, specs: Sequence[BucketSpec]) -> list[float]:
        return [
            float(await self._level(keys=[self._key(spec.key)], args=[spec.capacity, spec.rate]))
            for spec in specs
        ]

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

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)
