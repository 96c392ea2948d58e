"""Prompt-cache accounting on a fake clock, and the promise that a refused request leaves the cache alone."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from claudegate.errors import RateLimitError
from claudegate.simulator.cache import PromptCache
from claudegate.simulator.engine import SimulatorEngine
from claudegate.simulator.prompt import analyse_prompt
from claudegate.simulator.ratelimit import RateLimiter
from claudegate.simulator.settings import SimulatorSettings
from claudegate.wire.models import default_catalog

MODEL = default_catalog().resolve("claude-sonnet-5")
assert MODEL is not None
assert MODEL.min_cache_tokens == 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def words(count: int, word: str = "alpha") -> str:
    return " ".join([word] * count)


def body(system_tokens: int, question: str = "Q", ttl: str = "5m", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL.id,
        "max_tokens": 10,
        "system": [
            {"type": "text", "text": words(system_tokens), "cache_control": {"type": "ephemeral", "ttl": ttl}}
        ],
        "messages": [{"role": "user", "content": question}],
        **extra,
    }


def prompt(request: dict[str, Any]) -> Any:
    return analyse_prompt(request, MODEL, max_tokens=request["max_tokens"])


def test_write_then_read_within_the_ttl_then_miss_after_it() -> None:
    clock = Clock()
    cache = PromptCache(clock)
    first = cache.apply("key", prompt(body(2000)), 1024)
    assert first.cache_creation_5m_input_tokens == 2000
    assert first.cache_read_input_tokens == 0

    clock.now += 299
    second = cache.apply("key", prompt(body(2000, "other question")), 1024)
    assert second.cache_read_input_tokens == 2000
    assert second.cache_creation_input_tokens == 0

    clock.now += 299  # the hit refreshed the entry: still alive 598 s after it was written
    assert cache.apply("key", prompt(body(2000)), 1024).cache_read_input_tokens == 2000

    clock.now += 301
    expired = cache.apply("key", prompt(body(2000)), 1024)
    assert expired.cache_read_input_tokens == 0
    assert expired.cache_creation_input_tokens == 2000


def test_one_hour_entries_outlive_five_minutes() -> None:
    clock = Clock()
    cache = PromptCache(clock)
    assert cache.apply("key", prompt(body(2000, ttl="1h")), 1024).cache_creation_1h_input_tokens == 2000
    clock.now += 3000
    assert cache.apply("key", prompt(body(2000, ttl="1h")), 1024).cache_read_input_tokens == 2000


def test_below_the_minimum_nothing_is_written_and_owners_are_apart() -> None:
    cache = PromptCache(Clock())
    small = cache.apply("key", prompt(body(500)), 1024)
    assert small.cache_creation_input_tokens == 0
    assert small.input_tokens == prompt(body(500)).total_tokens
    cache.apply("key", prompt(body(2000)), 1024)
    assert cache.apply("someone-else", prompt(body(2000)), 1024).cache_read_input_tokens == 0


def test_lookup_alone_changes_nothing() -> None:
    cache = PromptCache(Clock())
    looked = cache.lookup("key", prompt(body(2000)), 1024)
    assert looked.usage.cache_creation_input_tokens == 2000
    assert cache.lookup("key", prompt(body(2000)), 1024).usage.cache_read_input_tokens == 0
    cache.commit("key", looked)
    assert cache.lookup("key", prompt(body(2000)), 1024).usage.cache_read_input_tokens == 2000


def test_input_splits_into_uncached_read_and_written() -> None:
    cache = PromptCache(Clock())
    request = body(2000)
    request["messages"][0]["content"] = [
        {"type": "text", "text": words(1500, "beta"), "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "the uncached tail"},
    ]
    cache.apply("key", prompt(body(2000)), 1024)
    usage = cache.apply("key", prompt(request), 1024)
    total = prompt(request).total_tokens
    assert usage.cache_read_input_tokens == 2000
    assert usage.cache_creation_input_tokens >= 1500
    assert usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens == total


def test_a_request_refused_by_the_rate_limiter_neither_writes_nor_refreshes_the_cache() -> None:
    clock = Clock()
    engine = SimulatorEngine(SimulatorSettings(tier="1", burst=0.1))
    engine.limiter = RateLimiter("1", 0.1, clock=clock)  # 3,000 input tokens, 500 more each second
    engine.cache = PromptCache(clock)

    written = engine.admit("key", engine.prepare(orjson.dumps(body(2000)), count_only=False))[0]
    assert written.cache_creation_input_tokens == 2000
    other = engine.prepare(orjson.dumps(body(2500)), count_only=False)
    with pytest.raises(RateLimitError, match="input tokens"):
        engine.admit("key", other)  # about 1,000 input tokens left in the bucket

    clock.now += 3.5
    retried = engine.admit("key", other)[0]
    assert retried.cache_read_input_tokens == 0  # the refused attempt wrote nothing
    assert retried.cache_creation_input_tokens == 2500
