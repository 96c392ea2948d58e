import pytest

from claudegate.flow.retry import RetryPolicy, retry_after_seconds, should_retry_status


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {}, True),
        (529, {}, True),
        (500, {}, True),
        (503, {}, True),
        (408, {}, False),
        (409, {}, False),
        (400, {}, False),
        (401, {}, False),
        (402, {}, False),
        (403, {}, False),
        (404, {}, False),
        (413, {}, False),
        (400, {"x-should-retry": "true"}, False),
        (429, {"x-should-retry": "true"}, True),
        (529, {"x-should-retry": "false"}, False),
        (500, {"x-should-retry": "false"}, False),
    ],
)
def test_which_errors_are_retried(status: int, headers: dict[str, str], expected: bool) -> None:
    assert should_retry_status(status, headers) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "Sat, 21 Nov 2026 12:00:10 GMT"}, 10.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_like_the_sdk(headers: dict[str, str], expected: float | None) -> None:
    noon = 1_795_262_400.0  # 2026-11-21T12:00:00Z
    assert retry_after_seconds(headers, now=lambda: noon) == expected


def test_backoff_doubles_up_to_the_cap_with_jitter_below_one() -> None:
    policy = RetryPolicy(initial_delay_s=0.5, max_delay_s=8.0, jitter=0.25)
    assert [policy.backoff(n, 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.backoff(0, 0.999) == pytest.approx(0.5 * 0.75, rel=1e-3)


def test_the_upstreams_wait_wins_over_backoff() -> None:
    policy = RetryPolicy()
    assert policy.delay(3, {"retry-after": "7"}, 0.5) == 7.0
    assert policy.delay(0, {}, 0.0) == 0.5


def test_no_retry_past_the_deadline_or_the_attempt_limit() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.may_retry(1, wait_s=2.0, now=100.0, deadline=110.0)
    assert not policy.may_retry(1, wait_s=12.0, now=100.0, deadline=110.0)
    assert not policy.may_retry(3, wait_s=0.1, now=100.0, deadline=110.0)
