"""The simulator's rate limiter on a fake clock: Anthropic's headers, 429s and continuous refill."""

from __future__ import annotations

import pytest

from claudegate.errors import RateLimitError
from claudegate.simulator.ratelimit import RateLimiter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(burst: float = 1.0) -> tuple[RateLimiter, Clock]:
    clock = Clock(50.0)
    return RateLimiter("1", burst, clock=clock, wall=lambda: 1_767_225_600.0 + clock.now), clock  # 2026-01-01


def test_headers_name_the_tier_limits_and_what_remains() -> None:
    limits, _ = limiter()
    headers = dict(limits.admit("key", "sonnet-4", 1200))
    assert headers["anthropic-ratelimit-requests-limit"] == "50"
    assert headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "30000"
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == "29000"  # 28800 to the nearest thousand
    assert headers["anthropic-ratelimit-output-tokens-limit"] == "8000"
    assert headers["anthropic-ratelimit-tokens-limit"] == "38000"
    # The reset is when the bucket would be full again: 1.2 s for one request, rounded up to whole seconds.
    assert headers["anthropic-ratelimit-requests-reset"] == "2026-01-01T00:00:52Z"
    assert headers["anthropic-ratelimit-input-tokens-reset"] == "2026-01-01T00:00:53Z"  # 2.4 s


def test_429_names_the_limit_and_says_when_to_retry() -> None:
    limits, clock = limiter(burst=0.1)  # 5 requests
    for _ in range(5):
        limits.admit("key", "sonnet-4", 10)
    with pytest.raises(RateLimitError, match="50 requests per minute") as caught:
        limits.admit("key", "sonnet-4", 10)
    assert caught.value.retry_after == 2  # one request every 1.2 s, rounded up to whole seconds
    assert dict(caught.value.headers)["anthropic-ratelimit-requests-remaining"] == "0"
    clock.now += 1.2
    limits.admit("key", "sonnet-4", 10)
    with pytest.raises(RateLimitError):
        limits.admit("key", "sonnet-4", 10)  # only one came back


def test_output_debt_blocks_until_repaid() -> None:
    limits, clock = limiter(burst=0.1)  # 800 output tokens
    limits.admit("key", "sonnet-4", 10)
    limits.charge_output("key", "sonnet-4", 1000)
    with pytest.raises(RateLimitError, match="8,000 output tokens per minute") as caught:
        limits.admit("key", "sonnet-4", 10)
    assert caught.value.retry_after == 2  # 201 tokens at 133.3 per second
    clock.now += 1.6
    limits.admit("key", "sonnet-4", 10)


def test_a_prompt_larger_than_the_bucket_waits_at_most_a_minute() -> None:
    limits, _ = limiter(burst=0.1)  # 3,000 input tokens
    with pytest.raises(RateLimitError, match="30,000 input tokens per minute") as caught:
        limits.admit("key", "sonnet-4", 5000)
    assert caught.value.retry_after == 60


def test_buckets_are_per_key_and_class_and_count_tokens_is_apart() -> None:
    limits, _ = limiter(burst=0.02)  # one request
    limits.admit("key", "sonnet-4", 10)
    with pytest.raises(RateLimitError):
        limits.admit("key", "sonnet-4", 10)
    limits.admit("key", "opus-4", 10)
    limits.admit("other", "sonnet-4", 10)
    limits.admit_count_tokens("key")
    limits.admit_count_tokens("key")  # tier 1: 100 per minute, so two fit in this bucket
    with pytest.raises(RateLimitError, match="token counting"):
        limits.admit_count_tokens("key")
