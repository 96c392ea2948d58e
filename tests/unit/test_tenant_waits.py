"""Tenant limits on the virtual-clock loop: a call waiting for its tenant's concurrency slot starts the
moment another call of the tenant ends, in arrival order, without polling; slots freed by another gateway
process are found by a bounded re-check; a call waiting for its tenant's per-minute rate starts when the
bucket has refilled; a refused or cancelled call holds nothing."""

from __future__ import annotations

import asyncio

import pytest

from claudegate.errors import RateLimitError
from claudegate.flow.state import BucketSpec, MemoryState
from claudegate.keys import LimitSet
from claudegate.pipeline.tenants import SHARED_SLOT_RECHECK_S, TenantGate, TenantHold
from tests.unit.lease_support import identity
from tests.unit.virtual_time import now, virtual_time

ONE_AT_A_TIME = identity(key=LimitSet(max_concurrency=1))


class CountingState(MemoryState):
    """Memory state that counts the attempts to take a slot."""

    def __init__(self) -> None:
        super().__init__(asyncio.get_running_loop().time)
        self.attempts = 0

    async def acquire(self, key: str, limit: int) -> bool:
        self.attempts += 1
        return await super().acquire(key, limit)


async def held_for(gate: TenantGate, seconds: float, started: list[float], deadline: float = 1e9) -> None:
    hold = await gate.take(ONE_AT_A_TIME, 10, deadline)
    started.append(now())
    try:
        await asyncio.sleep(seconds)
    finally:
        await gate.settle(hold, 10, served=True)


@virtual_time
async def test_a_waiting_call_starts_the_moment_another_call_of_its_tenant_ends() -> None:
    state = CountingState()
    gate = TenantGate(state)
    started: list[float] = []
    begin = now()
    await asyncio.gather(
        held_for(gate, 3.0, started), held_for(gate, 3.0, started), held_for(gate, 3.0, started)
    )
    assert [time - begin for time in started] == [0.0, 3.0, 6.0]
    # At most two tries a call (on arrival, and when woken), however long it waits: no polling.
    assert state.attempts <= 2 * 3


@virtual_time
async def test_waiting_calls_start_in_the_order_they_came() -> None:
    gate = TenantGate(MemoryState(asyncio.get_running_loop().time))
    order: list[int] = []

    async def one(number: int) -> None:
        hold = await gate.take(ONE_AT_A_TIME, 10, 1e9)
        order.append(number)
        await asyncio.sleep(1)
        await gate.settle(hold, 10, served=True)

    tasks = []
    for number in range(5):
        tasks.append(asyncio.create_task(one(number)))
        await asyncio.sleep(0.01)  # they arrive in this order, while the first still runs
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


@virtual_time
async def test_a_slot_freed_by_another_process_is_found_within_the_recheck() -> None:
    state = CountingState()
    gate = TenantGate(state, shared=True)  # as with Redis: another process may free a slot
    assert await state.acquire("key:7", 1)  # another process's call holds the key's only slot
    loop = asyncio.get_running_loop()
    loop.call_at(now() + 2.0, lambda: loop.create_task(state.release("key:7")))  # ...and ends in 2 s
    begin = now()
    hold = await gate.take(ONE_AT_A_TIME, 10, 1e9)
    assert 2.0 <= now() - begin <= 2.0 + SHARED_SLOT_RECHECK_S + 1e-9
    await gate.settle(hold, 10, served=True)


@virtual_time
async def test_a_call_whose_slot_does_not_come_in_time_is_refused_at_its_deadline_holding_nothing() -> None:
    state = MemoryState(asyncio.get_running_loop().time)
    gate = TenantGate(state)
    who = identity(key=LimitSet(requests_per_minute=6, tokens_per_minute=600, max_concurrency=1))
    first = await gate.take(who, 100, 1e9)
    begin = now()
    with pytest.raises(RateLimitError, match="calls in flight"):
        await gate.take(who, 100, begin + 4.0)
    assert now() - begin == pytest.approx(4.0)
    requests, tokens = await state.levels(
        [BucketSpec.per_minute("key:7:requests", 6), BucketSpec.per_minute("key:7:tokens", 600)]
    )
    assert requests == pytest.approx(5 + 4 * 0.1)  # the first call's request only, and 4 s of refill
    assert tokens == pytest.approx(500 + 4 * 10)
    assert gate.waiting("key:7") == 0
    await gate.settle(first, 0, served=False)
    assert await state.acquire("key:7", 1)


@virtual_time
async def test_a_call_over_its_rate_starts_when_the_bucket_has_refilled() -> None:
    gate = TenantGate(MemoryState(asyncio.get_running_loop().time))
    who = identity(key=LimitSet(requests_per_minute=2))  # one request every 30 s once the burst is spent
    holds: list[TenantHold] = [await gate.take(who, 10, 1e9), await gate.take(who, 10, 1e9)]
    begin = now()
    holds.append(await gate.take(who, 10, begin + 60))
    assert now() - begin == pytest.approx(30.0)
    for hold in holds:
        await gate.settle(hold, 10, served=True)


@virtual_time
async def test_a_call_cancelled_while_waiting_for_a_slot_leaves_the_line() -> None:
    state = MemoryState(asyncio.get_running_loop().time)
    gate = TenantGate(state)
    first = await gate.take(ONE_AT_A_TIME, 10, 1e9)
    waiting = asyncio.create_task(gate.take(ONE_AT_A_TIME, 10, 1e9))
    await asyncio.sleep(1)
    assert gate.waiting("key:7") == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert gate.waiting("key:7") == 0
    third = asyncio.create_task(gate.take(ONE_AT_A_TIME, 10, 1e9))
    await asyncio.sleep(1)
    await gate.settle(first, 10, served=True)
    begin = now()
    await gate.settle(await third, 10, served=True)
    assert now() == begin  # the slot went straight to the call still waiting


@virtual_time
async def test_settling_a_hold_twice_frees_its_slot_once() -> None:
    state = MemoryState(asyncio.get_running_loop().time)
    gate = TenantGate(state)
    who = identity(key=LimitSet(max_concurrency=2))
    first = await gate.take(who, 10, 1e9)
    second = await gate.take(who, 10, 1e9)
    await gate.settle(first, 10, served=True)
    await gate.settle(first, 10, served=True)
    assert await state.acquire("key:7", 2)  # the second call's slot is still held: one free, not two
    assert not await state.acquire("key:7", 2)
    await gate.settle(second, 10, served=True)
