"""Kept turns across gateway processes: two admission queues, each on a RedisState of its own (as two
processes would be), sharing one lane's buckets on the real Redis.

The buckets refill on the Redis server's clock, so these tests wait real time (about a second and a half
each, a whole-second retry-after); they assert what a caller sees (admitted or refused, before or after other
calls) and where the tokens went, never how long anything took.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from claudegate.errors import RateLimitError
from claudegate.flow.admission import AdmissionQueue, Ticket
from claudegate.flow.limits import LaneLimits
from claudegate.flow.redis_state import RedisState
from claudegate.flow.shared_turns import SharedTurns
from claudegate.flow.state import BucketSpec

# A kept turn lapses 0.25 s (and a fiftieth of the wait) after its time: looked at well after that.
_AFTER_LAPSE_S = 0.45


def now() -> float:
    return asyncio.get_running_loop().time()


@pytest.fixture
async def states(redis_url: str) -> AsyncIterator[tuple[RedisState, RedisState, RedisState]]:
    """Three "processes" on one account: no allotments, so every take is visible in the shared bucket."""
    prefix = f"test-turns-{secrets.token_hex(6)}:"
    made = [RedisState.from_url(redis_url, prefix=prefix, slice_s=0.0) for _ in range(3)]
    try:
        yield made[0], made[1], made[2]
    finally:
        for state in made:
            await state.close()


def lane() -> LaneLimits:
    """Two requests at once, one more a second; tokens plenty."""
    big = BucketSpec("in", 1e9, 1e9)
    return LaneLimits("test:lane", BucketSpec("req", 2, 1.0), big, BucketSpec("out", 1e9, 1e9))


def queue(state: RedisState, *, max_concurrency: int = 100) -> AdmissionQueue:
    """A lane's queue in one process, which has timed a reply that began at once."""
    made = AdmissionQueue(lane(), state, max_concurrency=max_concurrency)
    for streamed in (False, True):
        made.finished(Ticket("a", "u", 0, 0, deadline=0.0, streamed=streamed), 0.0, 0.0)
    return made


def call(place: str | None = None, *, deadline_in: float = 30.0) -> Ticket:
    return Ticket(
        "a", "u", 10, 10, deadline=now() + deadline_in, place=(lambda: place) if place is not None else None
    )


async def refused_in(owner: AdmissionQueue, place: str) -> float:
    """A call refused by ``owner`` (the bucket is empty), which keeps its turn: its retry-after."""
    with pytest.raises(RateLimitError) as refused:
        await owner.admit(call(place, deadline_in=0.05))
    assert owner.holds == 1
    return refused.value.retry_after


async def run(lane_queue: AdmissionQueue, ticket: Ticket) -> None:
    """A call that ends as soon as it starts."""
    await lane_queue.admit(ticket)
    lane_queue.finished(ticket, 0.0, None)


async def drained(*queues: AdmissionQueue) -> None:
    """Wait for the queues' dispatchers to stop (nothing waits any more), before their states close."""
    for lane_queue in queues:
        if lane_queue._dispatcher is not None:
            await asyncio.wait_for(lane_queue._dispatcher, timeout=10)


async def request_level(state: RedisState) -> float:
    return (await state.levels([lane().requests]))[0]


async def test_a_refused_caller_back_at_another_process_starts_there_before_its_queued_calls(
    states: tuple[RedisState, RedisState, RedisState],
) -> None:
    state_a, state_b, state_c = states
    owner, other = queue(state_a), queue(state_b, max_concurrency=1)
    busy = call()
    await other.admit(busy)  # the other process runs a call: its next calls queue
    first = call()
    await owner.admit(first)  # the bucket is empty now
    refused_at = now()
    retry_after = await refused_in(owner, "call-x")
    assert retry_after == 1.0
    queued = [asyncio.create_task(run(other, call())) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert other.waiting == 2
    await asyncio.sleep(refused_at + retry_after + 0.02 - now())

    back = call("call-x", deadline_in=0.2)
    await other.admit(back)  # at the other process: admitted, not refused, ahead of its queued calls
    assert back.position == 1
    assert other.in_flight == 2
    assert other.waiting == 2
    # Claimed once: a third process where the same call arrives finds no turn to claim.
    third = queue(state_c)
    shared = SharedTurns.for_lane(state_c, third.lane)
    assert shared is not None
    assert await shared.adopt(third, call("call-x"), now()) is None

    # Where it was kept, the turn ends at its lapse: its slot is free, and its request is the call's, so it is
    # not given back to the bucket (which refills only its second's worth since).
    await asyncio.sleep(refused_at + retry_after + _AFTER_LAPSE_S - now())
    assert owner.holds == 0
    assert owner.in_flight == 1  # only ``first``
    assert await request_level(state_a) < 0.9

    for ticket in (busy, back, first):
        (other if ticket is not first else owner).finished(ticket, 0.0, None)
    await asyncio.gather(*queued)
    await drained(owner, other, third)


async def test_an_unclaimed_turn_lapses_and_gives_its_request_back(
    states: tuple[RedisState, RedisState, RedisState],
) -> None:
    state_a, state_b, _ = states
    owner = queue(state_a)
    first, second = call(), call()
    await owner.admit(first)
    await owner.admit(second)  # the bucket is empty
    refused_at = now()
    retry_after = await refused_in(owner, "absent")
    await asyncio.sleep(refused_at + retry_after + 0.1 - now())
    assert owner.in_flight == 3  # at its time the turn took the request that refilled, and a slot
    await asyncio.sleep(refused_at + retry_after + _AFTER_LAPSE_S - now())
    assert owner.holds == 0
    assert owner.in_flight == 2
    assert await request_level(state_a) > 0.9  # the refill since, and the request the turn gave back
    # Nothing is left to claim: the same call at another process is a new call there.
    other = queue(state_b)
    shared = SharedTurns.for_lane(state_b, other.lane)
    assert shared is not None
    assert await shared.adopt(other, call("absent"), now()) is None
    owner.finished(first, 0.0, None)
    owner.finished(second, 0.0, None)
    await drained(owner, other)


async def test_a_caller_back_too_early_at_another_process_does_not_take_the_turn(
    states: tuple[RedisState, RedisState, RedisState],
) -> None:
    state_a, state_b, _ = states
    owner, other = queue(state_a), queue(state_b)
    first, second = call(), call()
    await owner.admit(first)
    await owner.admit(second)  # the bucket is empty
    refused_at = now()
    retry_after = await refused_in(owner, "eager")
    await asyncio.sleep(0.05)
    shared = SharedTurns.for_lane(state_b, other.lane)
    assert shared is not None
    assert await shared.adopt(other, call("eager"), now()) is None  # long before its time: no claim
    assert owner.holds == 1
    await asyncio.sleep(refused_at + retry_after + _AFTER_LAPSE_S - now())
    assert owner.holds == 0  # still its own, it lapsed there
    owner.finished(first, 0.0, None)
    owner.finished(second, 0.0, None)
    await drained(owner, other)
