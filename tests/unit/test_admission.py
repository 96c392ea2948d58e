"""The admission queue with real (short) time and in-memory buckets: fast limits, small numbers."""

from __future__ import annotations

import asyncio
import time

import pytest

from claudegate.errors import RateLimitError
from claudegate.flow.admission import AdmissionQueue, Ticket
from claudegate.flow.limits import LaneLimits
from claudegate.flow.state import BucketSpec, MemoryState


def lane(requests_per_second: float, capacity: float = 1.0) -> LaneLimits:
    big = BucketSpec("in", 1e9, 1e9)
    return LaneLimits(
        "test:lane", BucketSpec("req", capacity, requests_per_second), big, BucketSpec("out", 1e9, 1e9)
    )


def ticket(org: str, user: str = "u", *, deadline_in: float = 30.0, priority: int = 0) -> Ticket:
    return Ticket(org, user, 10, 10, deadline=time.monotonic() + deadline_in, priority=priority)


async def admit_all(queue: AdmissionQueue, tickets: list[Ticket], order: list[str]) -> None:
    async def one(t: Ticket) -> None:
        await queue.admit(t)
        order.append(t.org + "/" + t.user)
        queue.finished(0.01, None)

    await asyncio.gather(*(one(t) for t in tickets))


async def test_a_call_with_capacity_starts_at_once() -> None:
    queue = AdmissionQueue(lane(10), MemoryState(), max_concurrency=4)
    started = time.monotonic()
    await queue.admit(ticket("a"))
    assert time.monotonic() - started < 0.05
    assert queue.in_flight == 1


async def test_a_call_that_cannot_start_in_time_is_refused_at_once_with_an_honest_wait() -> None:
    queue = AdmissionQueue(lane(10), MemoryState(), max_concurrency=100)  # 10 calls a second
    waiting = [asyncio.create_task(queue.admit(ticket("a"))) for _ in range(10)]
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(RateLimitError) as refused:
        await queue.admit(ticket("a", deadline_in=0.3))  # its own 10 calls ahead need ~1 s
    assert time.monotonic() - started < 0.05  # refused at once, not after waiting
    # retry-after is the prediction itself (sent whole-second rounded up, and exact as retry-after-ms)
    assert refused.value.retry_after == pytest.approx(1.0, abs=0.15)
    assert (
        "predicted wait of 1.0 s" in refused.value.message
        or "predicted wait of 0.9 s" in refused.value.message
    )
    await asyncio.gather(*waiting)


async def test_predicted_wait_is_told_to_the_caller_and_comes_true() -> None:
    queue = AdmissionQueue(lane(20), MemoryState(), max_concurrency=100)
    for _ in range(3):
        await queue.admit(ticket("a"))  # the bucket holds one request: these leave it empty
    heard: list[tuple[int, float]] = []
    late = ticket("b")
    late.on_queued = lambda position, wait: heard.append((position, wait))
    started = time.monotonic()
    await queue.admit(late)
    waited = time.monotonic() - started
    assert len(heard) == 1
    position, predicted = heard[0]
    assert position == 1
    assert 0 < predicted <= 0.05 + 1e-6  # one request refills in 1/20 s
    assert predicted == pytest.approx(waited, abs=0.03)


async def test_organisations_share_the_lane_fairly() -> None:
    queue = AdmissionQueue(lane(50), MemoryState(), max_concurrency=100)
    order: list[str] = []
    flood = [ticket("big") for _ in range(12)]
    few = [ticket("small") for _ in range(3)]
    task = asyncio.create_task(admit_all(queue, flood, order))
    await asyncio.sleep(0.01)
    await admit_all(queue, few, order)
    await task
    # The small organisation arrived after twelve calls of the big one, yet its three calls do not wait
    # behind all twelve: they alternate with the big organisation's.
    last_small = max(i for i, who in enumerate(order) if who.startswith("small"))
    assert last_small < 9


async def test_users_share_their_organisations_part() -> None:
    queue = AdmissionQueue(lane(50), MemoryState(), max_concurrency=100)
    order: list[str] = []
    tickets = [ticket("org", "alice") for _ in range(8)] + [ticket("org", "bob") for _ in range(2)]
    await admit_all(queue, tickets, order)
    assert order.index("org/bob") < 4


async def test_higher_priority_goes_first() -> None:
    queue = AdmissionQueue(lane(50), MemoryState(), max_concurrency=100)
    order: list[str] = []
    low = [ticket("low") for _ in range(6)]
    task = asyncio.create_task(admit_all(queue, low, order))
    await asyncio.sleep(0.005)
    await admit_all(queue, [ticket("high", priority=5)], order)
    await task
    assert order.index("high/u") <= 2


async def test_concurrency_is_bounded() -> None:
    queue = AdmissionQueue(lane(1000, capacity=100), MemoryState(), max_concurrency=2)
    running = 0
    peak = 0

    async def call() -> None:
        nonlocal running, peak
        await queue.admit(ticket("a"))
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        queue.finished(0.02, 0.01)

    await asyncio.gather(*(call() for _ in range(8)))
    assert peak == 2


async def test_a_caller_that_gives_up_leaves_the_queue() -> None:
    queue = AdmissionQueue(lane(5), MemoryState(), max_concurrency=100)
    await queue.admit(ticket("a"))
    waiting = asyncio.create_task(queue.admit(ticket("a")))
    await asyncio.sleep(0.01)
    assert queue.waiting == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert queue.waiting == 0
