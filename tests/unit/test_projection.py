"""Projections of a lane's buckets: what calls in flight give back or owe, and when a bucket has enough."""

from __future__ import annotations

import math
from itertools import accumulate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claudegate.flow.projection import (
    STEP_S,
    InFlight,
    Projection,
    Reply,
    bucket_ready,
    bucket_wait,
    returns_by_step,
)
from claudegate.flow.state import BucketSpec

OUTPUT = BucketSpec("out", 10_000, 100)  # 100 tokens a second

# Half the lane's replies end after 1 s with 20 tokens, half after 5 s with 400 (210 on average).
REPLIES = [Reply(1.0, 20), Reply(5.0, 400)] * 10


def test_a_call_just_started_is_expected_to_give_back_its_surplus_over_the_average() -> None:
    mean, variance = returns_by_step([InFlight(0.0, 250)], REPLIES)
    assert mean[-1] == pytest.approx(250 - 210)  # what it reserved, less the average reply
    assert mean[math.ceil(1.0 / STEP_S)] == pytest.approx(0.5 * 230)  # the short half is back after 1 s
    assert variance[-1] == pytest.approx(190**2)  # it gives back 230 or owes 150, as likely


def test_a_call_that_outlived_the_short_replies_is_expected_to_owe_what_the_long_ones_made() -> None:
    mean, variance = returns_by_step([InFlight(2.0, 250)], REPLIES)
    assert mean[-1] == pytest.approx(250 - 400)
    assert len(mean) == math.ceil(3.0 / STEP_S) + 1  # owed 3 s from now, when the long replies end
    assert mean[len(mean) - 2] == 0.0
    assert variance[-1] == pytest.approx(0.0)  # every longer reply made 400: nothing uncertain left


def test_a_call_longer_than_every_recent_reply_owes_what_the_longest_made_about_now() -> None:
    mean, _ = returns_by_step([InFlight(9.0, 250, max_tokens=300)], REPLIES)
    assert mean == [250 - 300]  # the longest made 400, but this call may produce no more than 300


def test_calls_not_yet_started_give_back_evenly_over_a_call_duration() -> None:
    mean, variance = returns_by_step([], REPLIES, spread_tokens=80, spread_variance=400, spread_s=2.0)
    assert mean[0] == 0.0
    assert mean[4] == pytest.approx(40)  # halfway
    assert mean[-1] == pytest.approx(80)
    assert variance[-1] == pytest.approx(400)


def test_a_bucket_reaches_an_amount_later_when_a_debt_lands_before_it() -> None:
    mean, _ = returns_by_step([InFlight(2.0, 250)] * 4, REPLIES)  # owe 600 in 3 s
    owing = Projection(OUTPUT, 1200, tuple(mean))
    assert owing.until(1400) == pytest.approx(2.0)  # before the debt
    assert owing.until(1550) == pytest.approx(9.5)  # 350 of refill and 600 owed
    assert Projection(OUTPUT, 1200).until(1550) == pytest.approx(3.5)


def test_a_bucket_holds_an_amount_for_good_only_once_the_debts_have_landed() -> None:
    # 300 come back at once, 500 are owed 2 s from now: 400 are there at 1 s, but not after 2 s until 7 s.
    projection = Projection(OUTPUT, 0, (300.0,) * 8 + (-200.0,))
    assert projection.until(400) == pytest.approx(1.0)
    assert projection.steady(400) == pytest.approx(6.0)
    assert projection.steady(250) == pytest.approx(4.5)
    assert projection.steady(-300) == 0.0  # enough all along
    assert bucket_ready([projection, Projection(OUTPUT, 0)], [400, 700]) == pytest.approx(7.0)


def test_a_cautious_projection_counts_that_much_less_coming_back() -> None:
    projection = Projection(OUTPUT, 0, (0.0, 100.0), (0.0, 50.0))
    assert projection.until(150) == pytest.approx(0.5)  # 25 of refill by then, and 100 back
    assert projection.cautious().until(150) == pytest.approx(1.0)  # only 50 back, counted cautiously
    assert bucket_wait([projection.cautious(), Projection(OUTPUT, 0)], [150, 160]) == pytest.approx(1.6)


# A bucket's level now, what comes back (or is owed) by each step from now, and an amount to reach.
levels_and_steps = st.tuples(
    st.floats(-500, 500),
    st.lists(st.floats(-300, 300), min_size=1, max_size=20).map(lambda steps: tuple(accumulate(steps))),
    st.floats(-500, 3000),
)


@given(levels_and_steps)
def test_until_is_the_first_moment_the_bucket_has_supplied_the_amount(
    case: tuple[float, tuple[float, ...], float],
) -> None:
    level, settling, needed = case
    projection = Projection(OUTPUT, level, settling)
    seconds = projection.until(needed)
    assert projection.supplied(seconds) >= needed - 1e-6
    # No earlier moment had enough: check the start of every step before it, and just before it.
    earlier = [step * STEP_S for step in range(len(settling)) if step * STEP_S < seconds - 1e-9]
    earlier += [seconds - 1e-6] if seconds > 1e-6 else []
    assert all(projection.supplied(moment) < needed + 1e-9 for moment in earlier)


@given(levels_and_steps)
def test_steady_is_the_moment_the_bucket_has_the_amount_from_then_on(
    case: tuple[float, tuple[float, ...], float],
) -> None:
    level, settling, needed = case
    projection = Projection(OUTPUT, level, settling)
    seconds = projection.steady(needed)
    later = [seconds, *(step * STEP_S for step in range(len(settling)) if step * STEP_S > seconds)]
    assert all(projection.supplied(moment) >= needed - 1e-6 for moment in later)
    if seconds > 1e-6:
        assert projection.supplied(seconds - 1e-6) < needed  # short just before
