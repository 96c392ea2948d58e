"""Budgets on fake clocks: caps per organisation and user, refused with 402 naming the cap and its reset,
settled with the real usage, starting over with the next day or month."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from claudegate.accounting.prices import ModelPrice, PriceTable
from claudegate.flow.state import MemoryState
from claudegate.keys import NO_BUDGET, BudgetCaps, Identity, TenantSettings
from claudegate.pipeline.budgets import BudgetExceededError, BudgetGate, period_end
from claudegate.pipeline.relay import ReplyResult
from claudegate.pipeline.request import CallRequest
from claudegate.wire.usage_tap import Usage

MODEL = "test-model"
# $1 per million input tokens, $10 per million output tokens.
PRICES = PriceTable(
    {
        MODEL: ModelPrice(
            input=Decimal(1),
            output=Decimal(10),
            cache_write_5m=Decimal("1.25"),
            cache_write_1h=Decimal(2),
            cache_read=Decimal("0.1"),
            batch_discount=Decimal("0.5"),
        )
    }
)


class WallClock:
    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


def identity(org: BudgetCaps = NO_BUDGET, user: BudgetCaps = NO_BUDGET, user_id: int | None = 5) -> Identity:
    return Identity(
        org_id=1,
        org_name="acme",
        user_id=user_id,
        user_name="alice" if user_id else None,
        key_id=9,
        key_name="k",
        settings=TenantSettings(org_budget=org, user_budget=user),
    )


def call(who: Identity) -> CallRequest:
    return CallRequest(identity=who, request_id="r", body=b"{}", model=MODEL, max_tokens=100, deadline=0.0)


def result(input_tokens: int, output_tokens: int, cache_read: int = 0) -> ReplyResult:
    return ReplyResult(
        status=200,
        usage=Usage(
            input_tokens=input_tokens, output_tokens=output_tokens, cache_read_input_tokens=cache_read
        ),
        model=MODEL,
    )


@pytest.fixture
def clock() -> WallClock:
    return WallClock(datetime(2026, 11, 24, 22, 30, tzinfo=UTC))


@pytest.fixture
def gate(clock: WallClock) -> BudgetGate:
    return BudgetGate(MemoryState(wall_clock=clock), PRICES, clock=clock)


async def test_no_caps_no_work(gate: BudgetGate) -> None:
    assert await gate.reserve(call(identity()), 100, 100) is None


async def test_a_daily_token_cap_refuses_the_call_that_would_pass_it(gate: BudgetGate) -> None:
    who = identity(org=BudgetCaps(daily_tokens=1000))
    hold = await gate.reserve(call(who), 300, 200)
    assert hold is not None
    await gate.settle(hold, result(300, 200))  # 500 spent
    hold = await gate.reserve(call(who), 250, 200)  # 950: fits
    assert hold is not None
    await gate.settle(hold, result(250, 200))
    with pytest.raises(BudgetExceededError) as refused:
        await gate.reserve(call(who), 40, 20)  # 950 + 60 > 1000
    error = refused.value
    assert (error.status, error.error_type) == (402, "billing_error")
    assert "daily token budget of organisation acme" in error.message
    assert "1,000 tokens" in error.message
    assert "950 used" in error.message
    assert "resets at 2026-11-25T00:00:00Z (in 1 h 30 min)" in error.message
    assert error.resets_at == datetime(2026, 11, 25, tzinfo=UTC)


async def test_the_reservation_is_replaced_by_the_real_usage(gate: BudgetGate) -> None:
    who = identity(org=BudgetCaps(daily_tokens=1000))
    hold = await gate.reserve(call(who), 100, 800)  # reserves 900
    assert hold is not None
    await gate.settle(hold, result(100, 50))  # really 150
    assert await gate.reserve(call(who), 400, 400) is not None  # 150 + 800 fits


async def test_cached_input_counts_towards_tokens(gate: BudgetGate) -> None:
    who = identity(org=BudgetCaps(daily_tokens=1000))
    hold = await gate.reserve(call(who), 10, 10)
    assert hold is not None
    await gate.settle(hold, result(10, 10, cache_read=900))
    with pytest.raises(BudgetExceededError):
        await gate.reserve(call(who), 50, 50)


async def test_a_failed_call_gives_its_reservation_back(gate: BudgetGate) -> None:
    who = identity(org=BudgetCaps(daily_tokens=1000))
    for _ in range(5):
        hold = await gate.reserve(call(who), 400, 400)
        assert hold is not None
        await gate.settle(hold, ReplyResult(status=529))
    assert await gate.reserve(call(who), 400, 400) is not None


async def test_a_dollar_cap_of_a_user(gate: BudgetGate) -> None:
    who = identity(user=BudgetCaps(monthly_usd=0.01))  # one cent a month
    hold = await gate.reserve(call(who), 1000, 500)  # $0.001 + $0.005
    assert hold is not None
    await gate.settle(hold, result(1000, 500))
    with pytest.raises(BudgetExceededError) as refused:
        await gate.reserve(call(who), 1000, 500)
    assert "monthly dollar budget of user alice of organisation acme" in refused.value.message
    assert "$0.01" in refused.value.message
    assert "resets at 2026-12-01T00:00:00Z" in refused.value.message


async def test_a_user_cap_does_not_apply_to_a_key_without_a_user(gate: BudgetGate) -> None:
    assert await gate.reserve(call(identity(user=BudgetCaps(daily_tokens=1), user_id=None)), 10, 10) is None


async def test_the_next_day_starts_at_zero(gate: BudgetGate, clock: WallClock) -> None:
    who = identity(org=BudgetCaps(daily_tokens=1000, monthly_tokens=10_000))
    hold = await gate.reserve(call(who), 500, 400)
    assert hold is not None
    await gate.settle(hold, result(500, 400))
    with pytest.raises(BudgetExceededError, match="daily"):
        await gate.reserve(call(who), 100, 100)
    clock.now += 2 * 3600  # past midnight UTC
    assert await gate.reserve(call(who), 100, 100) is not None


async def test_refused_calls_reserve_nothing(gate: BudgetGate) -> None:
    who = identity(org=BudgetCaps(daily_tokens=1000), user=BudgetCaps(daily_tokens=100))
    for _ in range(3):
        with pytest.raises(BudgetExceededError, match="user alice"):
            await gate.reserve(call(who), 100, 100)
    hold = await gate.reserve(call(who), 40, 40)
    assert hold is not None


def test_period_ends() -> None:
    moment = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert period_end(moment, "day") == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_end(moment, "month") == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_end(datetime(2026, 2, 10, tzinfo=UTC), "month") == datetime(2026, 3, 1, tzinfo=UTC)
