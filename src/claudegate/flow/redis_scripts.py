"""The Lua scripts of ``RedisState``: each operation is one script, so a check-and-take across several buckets
is atomic. Time comes from the Redis server (``TIME``), so processes with drifting clocks agree on refills.

A bucket is a hash: ``level`` and ``updated``, and one field per process holding an allotment of it
(``m:<member>`` = "<tokens lent> <until>", see ``allotment``). The bucket refills only up to its capacity
less what is lent, so its level plus every process's unspent allotment never exceeds the capacity. A lease
that is not renewed expires (its holder stopped without giving it back): its tokens count as spent.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "COUNT", "FIELDS", "LEVELS", "RELEASE", "SHARE_DEMAND", "SYNC", "TRY_COUNT"]

# Per bucket: capacity, rate, used, give, charge, observed ('' for none), then for a take: needed (the level
# the take needs, with the reserve it keeps), take (what it takes), floor (what must stay behind), want
# (allotment asked for beyond the take), least (the smallest allotment worth having).
FIELDS = 11

# ARGV: member, lease seconds, n, mode ('take' or 'sync'), then FIELDS per bucket. Applies each bucket's
# settlements (allotment used or given back, charges, an observed level), then for 'take' takes every
# bucket's amount if all have it (and, from a comfortably full bucket, an allotment). Returns the result
# ('0' or the seconds to wait), each bucket's allotment granted, and each bucket's level after.
SYNC = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local member = 'm:' .. ARGV[1]
local lease = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local taking = ARGV[4] == 'take'
local W = 11
local levels, owns, lents = {}, {}, {}
local wait = 0
for i = 1, n do
  local b = 4 + (i - 1) * W
  local capacity = tonumber(ARGV[b + 1])
  local rate = tonumber(ARGV[b + 2])
  local all = redis.call('HGETALL', KEYS[i])
  local level, updated, lent, own = nil, now, 0, 0
  for j = 1, #all, 2 do
    local name = all[j]
    if name == 'level' then
      level = tonumber(all[j + 1])
    elseif name == 'updated' then
      updated = tonumber(all[j + 1])
    elseif string.sub(name, 1, 2) == 'm:' then
      local amount, expires = string.match(all[j + 1], '^(%S+) (%S+)$')
      if tonumber(expires) <= now then
        redis.call('HDEL', KEYS[i], name)
      else
        lent = lent + tonumber(amount)
        if name == member then own = tonumber(amount) end
      end
    end
  end
  if level == nil then
    level = capacity - lent
  else
    level = math.min(capacity - lent, level + math.max(0, now - updated) * rate)
  end
  local mine = math.max(0, own - tonumber(ARGV[b + 3]) - tonumber(ARGV[b + 4]))
  lent = lent - own + mine
  level = math.min(capacity - lent, level + tonumber(ARGV[b + 4]) - tonumber(ARGV[b + 5]))
  local observed = tonumber(ARGV[b + 6])
  if observed ~= nil then
    level = math.min(level, observed - lent)
  end
  if taking then
    local needed = tonumber(ARGV[b + 7])
    if needed > 0 and level < needed then
      wait = math.max(wait, (needed - level) / rate)
    end
  end
  levels[i], owns[i], lents[i] = level, mine, lent
end
local result = {'0'}
if wait > 0 then result[1] = tostring(wait) end
local extras, after = {}, {}
for i = 1, n do
  local b = 4 + (i - 1) * W
  local capacity = tonumber(ARGV[b + 1])
  local rate = tonumber(ARGV[b + 2])
  local level = levels[i]
  local extra = 0
  if taking and wait == 0 then
    local take = tonumber(ARGV[b + 8])
    -- Comfortably full: the allotment leaves at least as much again behind, beyond the take's reserve.
    local want = tonumber(ARGV[b + 10])
    extra = math.min(want, level - take - tonumber(ARGV[b + 9]) - want)
    if extra < tonumber(ARGV[b + 11]) then extra = 0 end
    level = level - take - extra
  end
  local mine = owns[i] + extra
  redis.call('HSET', KEYS[i], 'level', tostring(level), 'updated', tostring(now))
  if mine > 0 then
    redis.call('HSET', KEYS[i], member, tostring(mine) .. ' ' .. tostring(now + lease))
  else
    redis.call('HDEL', KEYS[i], member)
  end
  redis.call('EXPIRE', KEYS[i], math.ceil(math.max(0, capacity - level) / rate + lease) + 60)
  extras[i] = tostring(extra)
  after[i] = tostring(level)
end
for i = 1, n do result[#result + 1] = extras[i] end
for i = 1, n do result[#result + 1] = after[i] end
return result
"""

# ARGV: n, then capacity, rate per bucket. Each bucket's level now (less what is lent), without changing it.
LEVELS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local capacity = tonumber(ARGV[2 + (i - 1) * 2])
  local rate = tonumber(ARGV[3 + (i - 1) * 2])
  local all = redis.call('HGETALL', KEYS[i])
  local level, updated, lent = nil, now, 0
  for j = 1, #all, 2 do
    local name = all[j]
    if name == 'level' then
      level = tonumber(all[j + 1])
    elseif name == 'updated' then
      updated = tonumber(all[j + 1])
    elseif string.sub(name, 1, 2) == 'm:' then
      local amount, expires = string.match(all[j + 1], '^(%S+) (%S+)$')
      if tonumber(expires) > now then lent = lent + tonumber(amount) end
    end
  end
  if level == nil then
    level = capacity - lent
  else
    level = math.min(capacity - lent, level + math.max(0, now - updated) * rate)
  end
  out[i] = tostring(level)
end
return out
"""

# Concurrency slots: a counter with a safety expiry, so a crashed process cannot hold slots forever.
ACQUIRE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
  return 0
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

RELEASE = """
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
TRY_COUNT = """
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
COUNT = """
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[2]))
return total
"""


# KEYS[1]: the hash of what each member has queued ("until,amount,amount..."). ARGV: member, ttl in seconds,
# then the member's amounts. Records them (or removes the member when all are 0), drops expired members, and
# returns the other members' records (without their times).
SHARE_DEMAND = """
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
