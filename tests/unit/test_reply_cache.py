"""The in-memory response cache: entries expire after their time to live, and the least recently used go
first once the cache holds more bytes than allowed."""

from __future__ import annotations

from claudegate.cache.store import CachedReply, MemoryReplyCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reply(size: int) -> CachedReply:
    return CachedReply.of(200, [(b"content-type", b"application/json")], b"x" * size, "m", streamed=False)


async def test_an_entry_is_served_until_its_time_to_live_ends() -> None:
    clock = Clock()
    cache = MemoryReplyCache(max_bytes=1_000_000, ttl_s=60, clock=clock)
    await cache.put("k", reply(10))
    clock.now += 59.9
    assert await cache.get("k") == reply(10)
    clock.now += 0.1
    assert await cache.get("k") is None
    assert cache.bytes == 0


async def test_the_least_recently_used_entries_go_when_the_cache_is_full() -> None:
    one = reply(400)
    cache = MemoryReplyCache(max_bytes=3 * one.size, ttl_s=60, clock=Clock())
    for key in ("a", "b", "c"):
        await cache.put(key, reply(400))
    assert await cache.get("a") is not None  # now the most recently used
    await cache.put("d", reply(400))
    assert [await cache.get(key) is not None for key in "abcd"] == [True, False, True, True]
    assert cache.bytes == 3 * one.size


async def test_a_reply_bigger_than_the_cache_is_not_stored() -> None:
    cache = MemoryReplyCache(max_bytes=1000, ttl_s=60, clock=Clock())
    await cache.put("small", reply(10))
    await cache.put("huge", reply(5000))
    assert await cache.get("huge") is None
    assert await cache.get("small") is not None
