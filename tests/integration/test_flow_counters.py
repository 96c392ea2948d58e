"""Period counters (budgets) behave alike on both FlowState backends, and on Redis they are shared by every
process and expire at the end of their period."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from claudegate.flow.redis_state import RedisState
from claudegate.flow.state import CounterSpec, FlowState, MemoryState


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[FlowState]:
    if request.param == "memory":
        yield MemoryState()
        return
    redis_url: str = request.getfixturevalue("redis_url")
    backend = RedisState.from_url(redis_url, prefix=f"test-{secrets.token_hex(6)}:")
    try:
        yield backend
    finally:
        await backend.close()


def spec(name: str, seconds: float = 3600) -> CounterSpec:
    return CounterSpec(name, time.time() + seconds)


async def test_try_count_is_all_or_nothing(state: FlowState) -> None:
    tokens, dollars = spec("tokens"), spec("usd")
    assert await state.try_count([(tokens, 600, 1000), (dollars, 0.25, 1.0)]) == -1
    assert await state.try_count([(tokens, 300, 1000), (dollars, 0.9, 1.0)]) == 1  # dollars would pass
    assert await state.counts([tokens, dollars]) == [600, pytest.approx(0.25)]
    assert await state.try_count([(tokens, 500, 1000), (dollars, 0.1, 1.0)]) == 0
    assert await state.try_count([(tokens, 400, 1000), (dollars, 0.75, 1.0)]) == -1  # exactly at the caps
    assert await state.counts([tokens, dollars]) == [1000, pytest.approx(1.0)]


async def test_count_adds_and_takes_back(state: FlowState) -> None:
    counter = spec("c")
    assert await state.count(counter, 10.5) == pytest.approx(10.5)
    assert await state.count(counter, -4) == pytest.approx(6.5)
    assert await state.counts([counter, spec("never")]) == [pytest.approx(6.5), 0]


async def test_an_expired_counter_starts_over(state: FlowState) -> None:
    counter = spec("short", seconds=1.0)
    await state.count(counter, 5)
    await asyncio.sleep(2.1)
    assert await state.counts([counter]) == [0]
    assert await state.try_count([(counter, 3, 4)]) == -1


async def test_concurrent_reservations_never_pass_the_cap(state: FlowState) -> None:
    counter = spec("race")
    results = await asyncio.gather(*(state.try_count([(counter, 1, 20)]) for _ in range(60)))
    assert results.count(-1) == 20
    assert await state.counts([counter]) == [20]


@pytest.mark.redis
async def test_processes_share_counters_on_redis(redis_url: str) -> None:
    prefix = f"test-{secrets.token_hex(6)}:"
    first, second = (
        RedisState.from_url(redis_url, prefix=prefix),
        RedisState.from_url(redis_url, prefix=prefix),
    )
    try:
        counter = spec("shared")
        assert await first.try_count([(counter, 70, 100)]) == -1
        assert await second.try_count([(counter, 40, 100)]) == 0
        assert await second.try_count([(counter, 30, 100)]) == -1
        assert await first.counts([counter]) == [100]
    finally:
        await first.close()
        await second.close()
