"""Two gateway processes' ``RedisState`` on the real Redis, each admitting from allotments of the shared
buckets: together they never take more than a bucket allows at any moment, what one holds the other cannot
take, and what one holds unused comes back when it stops."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from claudegate.flow.redis_state import RedisState
from claudegate.flow.state import BucketSpec

pytestmark = pytest.mark.redis


@pytest.fixture
async def two_processes(redis_url: str) -> AsyncIterator[tuple[RedisState, RedisState]]:
    prefix = f"test-{secrets.token_hex(6)}:"
    first = RedisState.from_url(redis_url, prefix=prefix)
    second = RedisState.from_url(redis_url, prefix=prefix)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_two_processes_together_never_exceed_the_bucket(
    two_processes: tuple[RedisState, RedisState],
) -> None:
    spec = BucketSpec("lane:sim:requests", capacity=300, rate=200)
    loop = asyncio.get_running_loop()
    started = loop.time()
    taken: list[float] = []  # when each take succeeded, by either process
    per_process = [0, 0]

    wanted = spec.capacity + 100  # a bucketful and then some of its refill (half a second of it)

    async def caller(state: RedisState, index: int) -> None:
        # Until enough calls were taken, not for a fixed time: on a busy machine the callers may get little
        # of the loop, and the bucket's refill must still be reached. The time limit only ends a broken run.
        while len(taken) < wanted and loop.time() - started < 30:
            if await state.try_take([(spec, 1)]) == 0:
                taken.append(loop.time())
                per_process[index] += 1
            else:
                await asyncio.sleep(0.002)

    await asyncio.gather(*(caller(state, index % 2) for index, state in enumerate(two_processes * 8)))
    # At every moment, what both took is at most a full bucket plus its refill since: never more.
    for count, moment in enumerate(sorted(taken), start=1):
        assert count <= spec.capacity + spec.rate * (moment - started) + 2
    assert min(per_process) > 0  # both processes were admitting calls
    assert len(taken) >= wanted  # and they used the refill, not only the first bucketful


async def test_what_one_process_holds_the_other_cannot_take_until_it_is_given_back(
    two_processes: tuple[RedisState, RedisState],
) -> None:
    first, second = two_processes
    spec = BucketSpec("lane:sim:input", capacity=10_000, rate=4_000)
    assert await first.try_take([(spec, 100)]) == 0
    (held_by_first,) = await first.levels([spec])
    (seen_by_second,) = await second.levels([spec])
    allotment = held_by_first - seen_by_second
    assert allotment > 100  # the first took a slice beyond its call, to admit the next ones itself
    # The bucket refills only up to what it has not lent: the second never sees the first's slice.
    assert seen_by_second <= 10_000 - allotment + 1
    assert await second.try_take([(spec, seen_by_second + allotment / 2)]) > 0
    await first.close()  # stopping gives the unused allotment back, well before its lease would lapse
    (after,) = await second.levels([spec])
    assert after >= seen_by_second + allotment  # lent, the slice could never have refilled past 9,000


async def test_a_long_reply_charged_late_still_lowers_the_shared_bucket(
    two_processes: tuple[RedisState, RedisState],
) -> None:
    first, second = two_processes
    spec = BucketSpec("lane:sim:output", capacity=1_000, rate=0.001)
    await first.charge(spec, 600)  # settled in the next batch, not at once
    await asyncio.sleep(0.2)  # a batch goes out every 50 ms
    (level,) = await second.levels([spec])
    assert level == pytest.approx(400, abs=1)
