"""The two FlowState backends behave alike: the same tests run on memory and on the real Redis."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import AsyncIterator

import pytest

from claudegate.flow.redis_state import RedisState
from claudegate.flow.state import BucketSpec, FlowState, MemoryState


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


async def test_take_is_all_or_nothing_across_buckets(state: FlowState) -> None:
    requests = BucketSpec("a:req", capacity=5, rate=5 / 60)
    tokens = BucketSpec("a:tok", capacity=100, rate=100 / 60)
    assert await state.try_take([(requests, 1), (tokens, 90)]) == 0
    wait = await state.try_take([(requests, 1), (tokens, 20)])
    assert wait > 0  # 10 tokens short at 100/60 per second: about 6 s
    assert wait == pytest.approx(6.0, abs=0.2)
    levels = await state.levels([requests, tokens])
    assert levels[0] == pytest.approx(4, abs=0.05)  # the refused take left the request bucket alone
    assert levels[1] == pytest.approx(10, abs=0.5)


async def test_more_than_capacity_can_never_be_taken(state: FlowState) -> None:
    spec = BucketSpec("b", capacity=10, rate=1)
    assert math.isinf(await state.try_take([(spec, 11)]))


async def test_charge_allows_debt_and_refunds_stop_at_capacity(state: FlowState) -> None:
    spec = BucketSpec("c", capacity=100, rate=100 / 60)
    await state.charge(spec, 150)
    assert (await state.levels([spec]))[0] == pytest.approx(-50, abs=0.5)
    assert await state.try_take([(spec, 1)]) > 30  # the debt must refill first
    await state.charge(spec, -1000)
    assert (await state.levels([spec]))[0] == pytest.approx(100)


async def test_observe_lowers_but_never_raises(state: FlowState) -> None:
    spec = BucketSpec("d", capacity=1000, rate=1000 / 60)
    await state.observe(spec, 400)
    assert (await state.levels([spec]))[0] == pytest.approx(400, abs=20)
    await state.observe(spec, 900)
    assert (await state.levels([spec]))[0] < 500


async def test_a_take_with_headroom_leaves_that_much_refill_behind(state: FlowState) -> None:
    spec = BucketSpec("h", capacity=10, rate=1)
    assert await state.try_take([(spec, 9)], headroom_s=0.5) == 0  # 1 left: room for half a second's refill
    wait = await state.try_take([(spec, 1)], headroom_s=0.5)
    assert wait == pytest.approx(0.5, abs=0.05)  # 1 is there, but not 1 and half a second's refill
    assert (await state.levels([spec]))[0] == pytest.approx(1, abs=0.05)
    # A bucket too small to keep the reserve beside the amount takes it along: the next take waits for it.
    small = BucketSpec("h-small", capacity=1, rate=1)
    assert await state.try_take([(small, 1)], headroom_s=0.5) == 0
    assert await state.try_take([(small, 1)], headroom_s=0.5) == pytest.approx(1.5, abs=0.05)


async def test_buckets_refill_continuously(state: FlowState) -> None:
    spec = BucketSpec("e", capacity=10, rate=20)  # 20 tokens a second
    assert await state.try_take([(spec, 10)]) == 0
    await asyncio.sleep(0.25)
    level = (await state.levels([spec]))[0]
    assert 4 <= level <= 10


async def test_concurrency_slots(state: FlowState) -> None:
    assert await state.acquire("k", 2)
    assert await state.acquire("k", 2)
    assert not await state.acquire("k", 2)
    await state.release("k")
    assert await state.acquire("k", 2)


async def test_two_redis_clients_share_one_bucket(redis_url: str) -> None:
    prefix = f"test-{secrets.token_hex(6)}:"
    first, second = (
        RedisState.from_url(redis_url, prefix=prefix),
        RedisState.from_url(redis_url, prefix=prefix),
    )
    try:
        spec = BucketSpec("shared", capacity=3, rate=3 / 60)
        results = [await backend.try_take([(spec, 1)]) for backend in (first, second, first, second)]
        assert results[:3] == [0, 0, 0]
        assert results[3] > 0
    finally:
        await first.close()
        await second.close()


async def test_flags_lower_themselves_and_can_be_lowered(state: FlowState) -> None:
    assert await state.tripped("breaker:x") == 0
    await state.trip("breaker:x", 0.3)
    assert 0.1 < await state.tripped("breaker:x") <= 0.3
    await asyncio.sleep(0.35)
    assert await state.tripped("breaker:x") == 0
    await state.trip("breaker:y", 30)
    await state.trip("breaker:y", 0)
    assert await state.tripped("breaker:y") == 0


async def test_gateways_share_redis_state_only_under_the_same_prefix(redis_url: str) -> None:
    from claudegate.config import Settings
    from claudegate.runtime.services import flow_state

    account = f"test-{secrets.token_hex(6)}:"
    first = flow_state(Settings(redis_url=redis_url, redis_prefix=account))
    second = flow_state(Settings(redis_url=redis_url, redis_prefix=account))
    other = flow_state(Settings(redis_url=redis_url, redis_prefix=f"other-{secrets.token_hex(6)}:"))
    bucket = BucketSpec("lane:upstream:sonnet:requests", capacity=10, rate=10 / 60)
    try:
        assert await first.try_take([(bucket, 8)]) == 0
        (shared,) = await second.levels([bucket])
        (separate,) = await other.levels([bucket])
        assert shared == pytest.approx(2, abs=0.1)  # the same account: what one took, the other sees
        assert separate == pytest.approx(10)  # another deployment's prefix: untouched
    finally:
        for state in (first, second, other):
            await state.close()


async def test_gateway_processes_hear_what_the_others_have_queued(state: FlowState) -> None:
    assert await state.share_demand("lane", "one", [2, 2, 300, 500], ttl_s=10) == []
    assert await state.share_demand("lane", "two", [1, 1, 100, 250], ttl_s=10) == [[2, 2, 300, 500]]
    heard = await state.share_demand("lane", "three", [0, 0, 0, 0], ttl_s=10)  # nothing queued there
    assert sorted(heard) == [[1, 1, 100, 250], [2, 2, 300, 500]]
    # "one" has started its calls: it tells so, and the others no longer count them.
    assert await state.share_demand("lane", "one", [0, 0, 0, 0], ttl_s=10) == [[1, 1, 100, 250]]
    assert await state.share_demand("lane", "three", [0, 0, 0, 0], ttl_s=10) == [[1, 1, 100, 250]]
    assert await state.share_demand("another-lane", "three", [0, 0, 0, 0], ttl_s=10) == []


async def test_a_process_that_stops_telling_what_it_has_queued_stops_counting(state: FlowState) -> None:
    await state.share_demand("lane", "gone", [1, 1, 10, 10], ttl_s=0.2)  # then it dies
    assert await state.share_demand("lane", "here", [0, 0, 0, 0], ttl_s=10) == [[1, 1, 10, 10]]
    await asyncio.sleep(0.3)
    assert await state.share_demand("lane", "here", [0, 0, 0, 0], ttl_s=10) == []
