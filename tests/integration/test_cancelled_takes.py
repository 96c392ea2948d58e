"""A call cancelled while Redis takes its reservation keeps nothing: the server has done the take but its
reply is still on the way when the cancellation lands, and the slot, the per-minute allowance or the budget
it took is given back, so the next call of the tenant finds it free (not after the slot's 900 s expiry, nor
after midnight for a budget).

The state is the real Redis; only the replies of one kind of command are held back until the test lets them
go, which is how a cancellation lands at that await point every time."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from claudegate.accounting.prices import ModelPrice, PriceTable
from claudegate.errors import RateLimitError
from claudegate.flow.redis_state import RedisState
from claudegate.flow.state import BucketSpec, CounterSpec
from claudegate.keys import BudgetCaps, LimitSet
from claudegate.pipeline.budgets import BudgetGate
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.tenants import TenantGate
from tests.unit.lease_support import identity

T = TypeVar("T")

MODEL = "claude-sonnet-4-6"
PRICES = PriceTable(
    {
        MODEL: ModelPrice(
            input=Decimal(3),
            output=Decimal(15),
            cache_write_5m=Decimal("3.75"),
            cache_write_1h=Decimal(6),
            cache_read=Decimal("0.3"),
            batch_discount=Decimal("0.5"),
        )
    }
)


class HeldReplies(RedisState):
    """Redis whose reply to one kind of command (``hold``) waits, once the server has run it, until
    ``let_go`` is set; ``arrived`` is set when such a reply is held."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold: str | None = None
        self.arrived = asyncio.Event()
        self.let_go = asyncio.Event()

    async def _reply(self, command: str, reply: Awaitable[T]) -> T:
        answer = await reply
        if command == self.hold:
            self.hold = None  # once: the give-back's own commands go through
            self.arrived.set()
            await self.let_go.wait()
        return answer

    async def acquire(self, key: str, limit: int) -> bool:
        return await self._reply("acquire", super().acquire(key, limit))

    async def try_take(self, demands: Sequence[tuple[BucketSpec, float]], headroom_s: float = 0.0) -> float:
        return await self._reply("try_take", super().try_take(demands, headroom_s))

    async def try_count(self, demands: Sequence[tuple[CounterSpec, float, float]]) -> int:
        return await self._reply("try_count", super().try_count(demands))


@pytest.fixture
async def state(redis_url: str) -> AsyncIterator[HeldReplies]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url, decode_responses=True)
    backend = HeldReplies(client, prefix=f"test-{secrets.token_hex(6)}:")
    try:
        yield backend
    finally:
        await backend.close()


async def cancel_when_held(state: HeldReplies, command: str, take: Awaitable[object]) -> None:
    """Run ``take``, cancel it while the reply to ``command`` is held back, then let the reply go."""
    state.hold = command
    task = asyncio.ensure_future(take)
    await state.arrived.wait()
    task.cancel()
    state.let_go.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_call_cancelled_while_taking_its_tenants_slot_leaves_the_slot_free(
    state: HeldReplies,
) -> None:
    one_at_a_time = identity(key=LimitSet(max_concurrency=1))
    gate = TenantGate(state)
    loop = asyncio.get_running_loop()
    await cancel_when_held(state, "acquire", gate.take(one_at_a_time, 10, loop.time() + 60))
    # The next call of the tenant gets the only slot at once (its deadline allows no wait).
    hold = await gate.take(one_at_a_time, 10, loop.time())
    assert hold.slots == ["key:7"]
    with pytest.raises(RateLimitError):
        await gate.take(one_at_a_time, 10, loop.time())  # and the limit still holds
    await gate.settle(hold, 10, served=True)


async def test_a_call_cancelled_while_taking_its_per_minute_request_leaves_it_for_the_next(
    state: HeldReplies,
) -> None:
    once_a_minute = identity(key=LimitSet(requests_per_minute=1))
    gate = TenantGate(state)
    loop = asyncio.get_running_loop()
    await cancel_when_held(state, "try_take", gate.take(once_a_minute, 10, loop.time() + 60))
    hold = await gate.take(once_a_minute, 10, loop.time())
    await gate.settle(hold, 10, served=True)
    with pytest.raises(RateLimitError):
        await gate.take(once_a_minute, 10, loop.time())


async def test_a_call_cancelled_while_reserving_its_budget_reserves_nothing(state: HeldReplies) -> None:
    who = identity(budget=BudgetCaps(daily_tokens=1000))
    gate = BudgetGate(state, PRICES)
    call = CallRequest(identity=who, request_id="r", body=b"{}", model=MODEL, max_tokens=400, deadline=0.0)
    await cancel_when_held(state, "try_count", gate.reserve(call, 600, 400))
    # The whole day's budget is still there for a call that needs all of it.
    hold = await gate.reserve(call, 600, 400)
    assert hold is not None
    assert await state.counts([cap.spec for cap in hold.caps]) == [1000.0]
