"""The lease on the virtual-clock loop: every reservation a call takes (budget, tenant requests, tokens and
slots, a lane's turn and slot, a breaker's trial) comes back on every way out — a later stage refusing, the
call cancelled or its client leaving at each stage, cancelled mid-reply — and a retry, a failover or a
fallback model keeps exactly one budget and tenant reservation."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from claudegate.errors import OverloadedError, RateLimitError
from claudegate.keys import BudgetCaps, LimitSet
from claudegate.pipeline.budgets import BudgetExceededError
from claudegate.pipeline.lease import Lease
from claudegate.pipeline.relay import ClientGone, ReplyResult
from claudegate.pipeline.request import CallRequest
from claudegate.wire.tiers import Limits
from claudegate.wire.usage_tap import Usage
from tests.unit.lease_support import MODEL, OTHER_MODEL, Gates, Sink, identity
from tests.unit.virtual_time import now, virtual_time

BUDGET = BudgetCaps(daily_tokens=1_000_000)
TOKENS = 600  # a minute's tokens of the key: 10 a second, a call's estimate in 13 s
LIMITED = LimitSet(requests_per_minute=6, tokens_per_minute=TOKENS, max_concurrency=2)  # a request per 10 s


def report(result: ReplyResult, input_tokens: int, output_tokens: int, *, status: int = 200) -> None:
    """What the relay leaves in ``result`` as a reply passes."""
    result.status = status
    result.usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    result.model = MODEL


async def hold(gates: Gates, call: CallRequest, entered: asyncio.Event, leave: asyncio.Event) -> None:
    """A call that is admitted and stays until ``leave`` is set, with no reply (it never reached upstream)."""
    async with gates.admission.admit(call, Sink(), ReplyResult()):
        entered.set()
        await leave.wait()


async def slots_held(gates: Gates, scope: str = "key:7") -> int:
    for held in range(10):
        if await gates.state.acquire(scope, held + 1):
            await gates.state.release(scope)
            return held
    raise AssertionError("more slots held than expected")


async def assert_holds_only(gates: Gates, calls: list[CallRequest], *, elapsed: float = 0.0) -> None:
    """The tenant and the budget hold exactly the reservations of ``calls`` (admitted, not yet served),
    ``elapsed`` seconds after they were taken (the tenant's buckets have refilled for that long)."""
    reserved = sum(gates.estimate(call).input_tokens + gates.estimate(call).output_tokens for call in calls)
    assert await gates.budget_spent() == reserved
    tokens_left = min(TOKENS, TOKENS - reserved + TOKENS / 60 * elapsed)
    assert await gates.tenant_level("tokens", TOKENS) == pytest.approx(tokens_left, abs=1e-6)
    requests_left = min(6, 6 - len(calls) + 0.1 * elapsed)
    assert await gates.tenant_level("requests", 6) == pytest.approx(requests_left, abs=1e-6)
    assert await slots_held(gates) == len(calls)
    assert gates.tenants.waiting("key:7") == 0


# -- an admitted call ----------------------------------------------------------------------------------------


@virtual_time
async def test_an_admitted_call_holds_one_of_each_and_pays_what_its_reply_used() -> None:
    gates = Gates()
    call = gates.call(identity(key=LIMITED, budget=BUDGET))
    result = ReplyResult()
    async with gates.admission.admit(call, Sink(), result) as lease:
        await assert_holds_only(gates, [call])
        assert gates.in_flight() == 1
        assert lease.place is not None
        lease.place.dispatch()
        report(result, 30, 12)
    assert await gates.budget_spent() == 42
    assert await gates.tenant_level("tokens", TOKENS) == TOKENS - 42
    assert await gates.tenant_level("requests", 6) == 5  # it reached the upstream: its request counts
    assert await slots_held(gates) == 0
    assert gates.in_flight() == 0
    assert await gates.lane_levels() == (999, 1_000_000 - 30, 1_000_000 - 12)


@virtual_time
async def test_settling_twice_changes_nothing() -> None:
    gates = Gates()
    result = ReplyResult()
    async with gates.admission.admit(
        gates.call(identity(key=LIMITED, budget=BUDGET)), Sink(), result
    ) as lease:
        assert lease.place is not None
        lease.place.dispatch()
        report(result, 30, 12)
        await lease.settle()
        await lease.settle()
        settled = (
            await gates.budget_spent(),
            await gates.tenant_level("tokens", TOKENS),
            await gates.lane_levels(),
        )
    assert (
        await gates.budget_spent(),
        await gates.tenant_level("tokens", TOKENS),
        await gates.lane_levels(),
    ) == (settled)
    assert settled[0] == 42
    assert await slots_held(gates) == 0


@virtual_time
async def test_a_lease_is_entered_once_and_takes_nothing_once_settled() -> None:
    gates = Gates()
    lease = gates.admission.admit(gates.call(identity()), Sink(), ReplyResult())
    async with lease:
        with pytest.raises(RuntimeError):
            await lease.__aenter__()
        await lease.settle()
        with pytest.raises(RuntimeError):  # a place taken now would never be settled
            await lease.retry(frozenset())
    assert gates.in_flight() == 0


# -- each stage refusing gives back what the stages before it took -------------------------------------------


@virtual_time
async def test_a_call_out_of_budget_takes_nothing_else() -> None:
    gates = Gates()
    call = gates.call(identity(key=LIMITED, budget=BudgetCaps(daily_tokens=10)))
    with pytest.raises(BudgetExceededError):
        async with gates.admission.admit(call, Sink(), ReplyResult()):
            pytest.fail("admitted over its budget")
    assert await gates.budget_spent() == 0
    assert await gates.tenant_level("requests", 6) == 6
    assert await slots_held(gates) == 0
    assert gates.in_flight() == 0


@virtual_time
async def test_a_call_refused_by_its_tenants_rate_gives_back_its_budget() -> None:
    gates = Gates()
    who = identity(key=LimitSet(requests_per_minute=1, tokens_per_minute=60_000), budget=BUDGET)
    first = gates.call(who)
    entered, leave = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(gates, first, entered, leave))
    await entered.wait()
    started = now()
    with pytest.raises(RateLimitError):
        async with gates.admission.admit(gates.call(who, deadline_in=5), Sink(), ReplyResult()):
            pytest.fail("admitted over the key's requests per minute")
    assert now() == started  # refused at once: the next request comes after its deadline
    estimate = gates.estimate(first)
    assert await gates.budget_spent() == estimate.input_tokens + estimate.output_tokens
    leave.set()
    await holder
    assert await gates.budget_spent() == 0


@virtual_time
async def test_a_call_refused_a_tenant_slot_gives_back_its_budget_requests_and_tokens() -> None:
    gates = Gates()
    who = identity(key=dataclasses.replace(LIMITED, max_concurrency=1), budget=BUDGET)
    first = gates.call(who)
    entered, leave = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(gates, first, entered, leave))
    await entered.wait()
    started = now()
    with pytest.raises(RateLimitError, match="calls in flight"):
        async with gates.admission.admit(gates.call(who, deadline_in=2), Sink(), ReplyResult()):
            pytest.fail("admitted over the key's concurrency")
    assert now() - started == pytest.approx(2.0)  # it waited for a slot until its deadline
    # Only the first call's reservations remain (and two seconds of refill of the request bucket).
    await assert_holds_only(gates, [first], elapsed=2)
    leave.set()
    await holder


@virtual_time
async def test_a_call_refused_by_the_upstreams_lane_gives_back_its_tenant_and_budget() -> None:
    gates = Gates(lane=Limits(1, 1_000_000, 1_000_000))  # one request a minute upstream
    who = identity(key=LIMITED, budget=BUDGET)
    first = gates.call(who)
    entered, leave = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(gates, first, entered, leave))
    await entered.wait()
    with pytest.raises(RateLimitError):
        async with gates.admission.admit(gates.call(who, deadline_in=5), Sink(), ReplyResult()):
            pytest.fail("admitted over the lane's requests per minute")
    await assert_holds_only(gates, [first])
    assert gates.in_flight() == 1
    leave.set()
    await holder
    assert await slots_held(gates) == 0


@virtual_time
async def test_a_call_refused_by_a_half_open_breaker_gives_back_its_lane_place_tenant_and_budget() -> None:
    gates = Gates()
    gates.member("a").breaker.record_failure(time.monotonic())  # open, and half-open at once: one trial
    who = identity(key=LIMITED, budget=BUDGET)
    first = gates.call(who)
    async with gates.admission.admit(first, Sink(), ReplyResult()) as trial:
        assert trial.place is not None
        assert trial.place.probe
        with pytest.raises(OverloadedError):
            async with gates.admission.admit(gates.call(who), Sink(), ReplyResult()):
                pytest.fail("a second trial of a half-open breaker")
        await assert_holds_only(gates, [first])
        estimate = gates.estimate(first)
        assert gates.in_flight() == 1
        _, input_left, output_left = await gates.lane_levels()
        assert (input_left, output_left) == (
            1_000_000 - estimate.input_tokens,
            1_000_000 - estimate.output_tokens,
        )


@virtual_time
async def test_a_trial_that_ends_without_a_reply_lets_the_next_call_try() -> None:
    gates = Gates()
    gates.member("a").breaker.record_failure(time.monotonic())
    who = identity()
    task = asyncio.create_task(hold(gates, gates.call(who), asyncio.Event(), asyncio.Event()))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with gates.admission.admit(gates.call(who), Sink(), ReplyResult()) as lease:
        assert lease.place is not None
        assert lease.place.probe


# -- cancelled, or the client gone, while waiting at each stage ----------------------------------------------


async def cancelled_while_waiting(gates: Gates, call: CallRequest, *, after: float) -> None:
    task = asyncio.create_task(hold(gates, call, asyncio.Event(), asyncio.Event()))
    await asyncio.sleep(after)
    assert not task.done()  # still waiting
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@virtual_time
async def test_cancelled_while_waiting_for_its_tenants_rate_it_gives_back_its_budget() -> None:
    gates = Gates()
    who = identity(key=LimitSet(requests_per_minute=1), budget=BUDGET)
    first = gates.call(who)
    entered, leave = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(gates, first, entered, leave))
    await entered.wait()
    await cancelled_while_waiting(gates, gates.call(who, deadline_in=120), after=10)
    estimate = gates.estimate(first)
    assert await gates.budget_spent() == estimate.input_tokens + estimate.output_tokens
    leave.set()
    await holder


@virtual_time
async def test_cancelled_while_waiting_for_a_tenant_slot_it_gives_back_everything() -> None:
    gates = Gates()
    who = identity(key=dataclasses.replace(LIMITED, max_concurrency=1), budget=BUDGET)
    first = gates.call(who)
    entered, leave = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(gates, first, entered, leave))
    await entered.wait()
    await cancelled_while_waiting(gates, gates.call(who), after=3)
    await assert_holds_only(gates, [first], elapsed=3)
    leave.set()
    await holder


@virtual_time
async def test_cancelled_while_queued_at_the_upstream_it_gives_back_its_tenant_and_budget() -> None:
    gates = Gates(lane=Limits(1, 1_000_000, 1_000_000))
    who = identity(key=LIMITED, budget=BUDGET)
    first = gates.call(who)
    entered, leave = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(gates, first, entered, leave))
    await entered.wait()
    await cancelled_while_waiting(gates, gates.call(who, deadline_in=300), after=5)
    await assert_holds_only(gates, [first], elapsed=5)
    assert gates.queues.waiting("a") == 0
    leave.set()
    await holder


@virtual_time
async def test_a_client_that_leaves_while_queued_gives_back_its_tenant_and_budget() -> None:
    gates = Gates(lane=Limits(1, 1_000_000, 1_000_000))
    who = identity(key=LIMITED, budget=BUDGET)
    first = gates.call(who)
    entered, leave = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(gates, first, entered, leave))
    await entered.wait()
    sink = Sink()

    async def second() -> None:
        async with gates.admission.admit(gates.call(who, deadline_in=300), sink, ReplyResult()):
            pytest.fail("admitted after its client left")

    task = asyncio.create_task(second())
    await asyncio.sleep(5)
    sink.leave()
    with pytest.raises(ClientGone):
        await task
    await assert_holds_only(gates, [first], elapsed=5)
    assert gates.queues.waiting("a") == 0
    leave.set()
    await holder


@virtual_time
async def test_cancelled_mid_reply_it_pays_for_what_the_reply_produced_so_far() -> None:
    gates = Gates()
    result = ReplyResult()
    replying = asyncio.Event()

    async def call() -> None:
        async with gates.admission.admit(
            gates.call(identity(key=LIMITED, budget=BUDGET)), Sink(), result
        ) as lease:
            assert lease.place is not None
            lease.place.dispatch()
            report(result, 20, 5)  # a stream has begun: the relay counts as it goes
            result.streamed = True
            replying.set()
            await asyncio.sleep(100)

    task = asyncio.create_task(call())
    await replying.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gates.budget_spent() == 25
    assert await gates.tenant_level("tokens", TOKENS) == TOKENS - 25
    assert await slots_held(gates) == 0
    assert gates.in_flight() == 0
    assert await gates.lane_levels() == (999, 1_000_000 - 20, 1_000_000 - 5)


# -- retries, failover and fallback models keep one call-level reservation -----------------------------------


@virtual_time
async def test_retries_on_the_same_upstream_take_its_lane_again_but_the_budget_and_tenant_once() -> None:
    gates = Gates()
    call = gates.call(identity(key=LIMITED, budget=BUDGET))
    result = ReplyResult()
    async with gates.admission.admit(call, Sink(), result) as lease:
        for _ in range(2):  # two attempts the upstream did not serve (overloaded)
            assert lease.place is not None
            lease.place.dispatch()
            await lease.place.unserved()
            await lease.retry(frozenset({"a"}))
            await assert_holds_only(gates, [call])
            assert gates.in_flight() == 1
        assert lease.place is not None
        lease.place.dispatch()
        report(result, 30, 12)
    assert await gates.budget_spent() == 42
    assert await gates.tenant_level("tokens", TOKENS) == TOKENS - 42
    assert await gates.tenant_level("requests", 6) == 5
    assert await gates.lane_levels() == (997, 1_000_000 - 30, 1_000_000 - 12)  # three requests reached it
    assert gates.in_flight() == 0


@virtual_time
async def test_failover_moves_the_lane_place_and_keeps_one_tenant_and_budget_reservation() -> None:
    gates = Gates(("a", "b"))
    call = gates.call(identity(key=LIMITED, budget=BUDGET))
    result = ReplyResult()
    async with gates.admission.admit(call, Sink(), result) as lease:
        assert lease.place is not None
        assert lease.place.member.name == "a"
        lease.place.dispatch()
        await lease.place.unserved()  # unreachable: the failure opens a's breaker
        await lease.retry(frozenset({"a"}))
        assert lease.place is not None
        assert lease.place.member.name == "b"
        await assert_holds_only(gates, [call])
        assert (gates.in_flight("a"), gates.in_flight("b")) == (0, 1)
        lease.place.dispatch()
        report(result, 30, 12)
    assert await gates.budget_spent() == 42
    assert await gates.lane_levels("a") == (999, 1_000_000, 1_000_000)
    assert await gates.lane_levels("b") == (999, 1_000_000 - 30, 1_000_000 - 12)


@virtual_time
async def test_a_fallback_model_takes_its_own_lane_and_keeps_one_tenant_and_budget_reservation() -> None:
    gates = Gates()
    call = gates.call(identity(key=LIMITED, budget=BUDGET), fallbacks=(OTHER_MODEL,))
    result = ReplyResult()
    async with gates.admission.admit(call, Sink(), result) as lease:
        assert lease.place is not None
        lease.place.dispatch()
        await lease.place.unserved()
        await lease.fall_back(dataclasses.replace(call, model=OTHER_MODEL, fallbacks=()))
        assert lease.call.model == OTHER_MODEL
        assert call.model == MODEL  # the caller's call is unchanged
        assert lease.place is not None
        assert lease.place.call.model == OTHER_MODEL
        await assert_holds_only(gates, [call])
        lease.place.dispatch()
        report(result, 30, 12)
    assert await gates.budget_spent() == 42
    assert await slots_held(gates) == 0
    assert gates.in_flight() == 0


@virtual_time
async def test_a_retry_the_lane_refuses_leaves_the_lease_holding_nothing() -> None:
    gates = Gates(lane=Limits(1, 1_000_000, 1_000_000))
    call = gates.call(identity(key=LIMITED, budget=BUDGET), deadline_in=5)
    async with gates.admission.admit(call, Sink(), ReplyResult()) as lease:
        assert lease.place is not None
        lease.place.dispatch()
        await lease.place.unserved(blame=False)
        with pytest.raises(RateLimitError):
            await lease.retry(frozenset({"a"}))  # the lane's one request a minute is spent
        assert lease.place is None
    assert await gates.budget_spent() == 0
    assert await gates.tenant_level("requests", 6) == 5  # it reached the upstream once
    assert await gates.tenant_level("tokens", TOKENS) == TOKENS
    assert await slots_held(gates) == 0
    assert gates.in_flight() == 0


@virtual_time
async def test_cancelled_while_queued_for_a_retry_it_gives_back_everything() -> None:
    gates = Gates(lane=Limits(1, 1_000_000, 1_000_000))
    call = gates.call(identity(key=LIMITED, budget=BUDGET), deadline_in=300)
    queued = asyncio.Event()

    async def retried() -> None:
        lease: Lease
        async with gates.admission.admit(call, Sink(), ReplyResult()) as lease:
            assert lease.place is not None
            lease.place.dispatch()
            await lease.place.unserved(blame=False)
            queued.set()
            await lease.retry(frozenset())

    task = asyncio.create_task(retried())
    await queued.wait()
    await asyncio.sleep(5)
    assert gates.queues.waiting("a") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gates.budget_spent() == 0
    assert await slots_held(gates) == 0
    assert gates.queues.waiting("a") == 0
    assert gates.in_flight() == 0
