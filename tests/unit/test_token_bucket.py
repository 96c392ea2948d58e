"""TokenBucket on a fake clock: time is a number the test moves, nothing sleeps."""

from __future__ import annotations

import math

import pytest

from claudegate.flow.bucket import TokenBucket


def test_a_new_bucket_is_full_and_cannot_overfill() -> None:
    bucket = TokenBucket(capacity=10, rate=2, now=100.0)
    assert bucket.level(100.0) == 10
    assert bucket.level(1_000.0) == 10


def test_take_succeeds_while_tokens_last_and_takes_nothing_when_refused() -> None:
    bucket = TokenBucket(capacity=3, rate=1, now=0.0)
    assert [bucket.try_take(1, 0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.level(0.0) == 0
    assert not bucket.try_take(2, 1.0)  # only one token back after a second
    assert bucket.level(1.0) == pytest.approx(1.0)


def test_refill_is_continuous_not_a_window_reset() -> None:
    bucket = TokenBucket(capacity=50, rate=50 / 60, now=0.0)  # 50 requests per minute
    for _ in range(50):
        assert bucket.try_take(1, 0.0)
    assert bucket.level(1.2) == pytest.approx(1.0)  # one request every 1.2 s
    assert bucket.level(30.0) == pytest.approx(25.0)
    assert bucket.level(59.0) == pytest.approx(50 * 59 / 60)


def test_wait_for_says_how_long_until_an_amount_is_available() -> None:
    bucket = TokenBucket(capacity=10, rate=2, now=0.0)
    assert bucket.wait_for(10, 0.0) == 0
    bucket.try_take(10, 0.0)
    assert bucket.wait_for(1, 0.0) == pytest.approx(0.5)
    assert bucket.wait_for(4, 1.0) == pytest.approx(1.0)
    assert bucket.wait_for(11, 1.0) == math.inf  # more than the bucket ever holds


def test_charge_goes_into_debt_that_refill_pays_back() -> None:
    bucket = TokenBucket(capacity=10, rate=1, now=0.0)
    bucket.charge(25, 0.0)  # output counted after the fact may exceed what was left
    assert bucket.level(0.0) == -15
    assert not bucket.try_take(1, 10.0)
    assert bucket.wait_for(1, 10.0) == pytest.approx(6.0)
    assert bucket.try_take(1, 16.0)


def test_seconds_to_full_and_time_going_backwards() -> None:
    bucket = TokenBucket(capacity=60, rate=1, now=0.0)
    bucket.try_take(30, 0.0)
    assert bucket.seconds_to_full(0.0) == pytest.approx(30.0)
    assert bucket.level(-5.0) == 30  # an earlier reading changes nothing
    assert bucket.seconds_to_full(40.0) == 0


@pytest.mark.parametrize(("capacity", "rate"), [(0, 1), (1, 0), (-1, 1)])
def test_a_bucket_needs_positive_capacity_and_rate(capacity: float, rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(capacity, rate, now=0.0)
