"""Rate limits at usage tier 1: Anthropic's headers, 429s with retry-after, continuous refill, pools."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anthropic
import pytest

from tests.integration.simulator_support import (
    CACHE_MODEL,
    HELLO,
    MODEL,
    prose,
    simulator,
    sync_client,
    unique_key,
)

LIMIT = "anthropic-ratelimit-"


@pytest.fixture(scope="module")
def tier1_url() -> Iterator[str]:
    """Tier 1 with a full minute's allowance available at once."""
    with simulator(tier="1") as url:
        yield url


@pytest.fixture(scope="module")
def tight_url() -> Iterator[str]:
    """Tier 1 with buckets a tenth of a minute deep: 5 requests, 3,000 input and 800 output tokens."""
    with simulator(tier="1", burst=0.1) as url:
        yield url


def create_raw(client: anthropic.Anthropic, **overrides: Any) -> Any:
    request: dict[str, Any] = {"model": MODEL, "max_tokens": 50, "messages": HELLO, **overrides}
    return client.messages.with_raw_response.create(**request)


def reset_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)  # RFC 3339, whole seconds


def test_tier1_headers_carry_the_published_limits_and_remaining_falls(tier1_url: str) -> None:
    sent = datetime.now(UTC)
    with sync_client(tier1_url, api_key=unique_key()) as client:
        responses = [create_raw(client) for _ in range(3)]
        big = create_raw(client, messages=[{"role": "user", "content": prose(6000)}])
        long_reply = create_raw(client, max_tokens=3000, extra_headers={"x-simulator-reply-tokens": "2000"})
        after = create_raw(client)
        haiku = create_raw(client, model="claude-haiku-4-5")

    headers = responses[0].headers
    assert headers[LIMIT + "requests-limit"] == "50"
    assert headers[LIMIT + "input-tokens-limit"] == "30000"
    assert headers[LIMIT + "output-tokens-limit"] == "8000"
    assert headers[LIMIT + "tokens-limit"] == "38000"
    for name in ("requests-reset", "input-tokens-reset", "output-tokens-reset", "tokens-reset"):
        # Not before the first call was sent (the reply came later still), within a minute of it.
        assert 0 <= (reset_time(headers[LIMIT + name]) - sent.replace(microsecond=0)).total_seconds() <= 62

    assert [int(r.headers[LIMIT + "requests-remaining"]) for r in responses] == [49, 48, 47]
    assert (
        responses[0].headers[LIMIT + "input-tokens-remaining"] == "30000"
    )  # rounded to the nearest thousand
    assert big.headers[LIMIT + "input-tokens-remaining"] == "24000"
    assert (
        long_reply.headers[LIMIT + "output-tokens-remaining"] == "8000"
    )  # output is charged as it is produced
    assert after.headers[LIMIT + "output-tokens-remaining"] == "6000"
    assert int(after.headers[LIMIT + "tokens-remaining"]) <= 24000 + 6000

    assert haiku.headers[LIMIT + "requests-limit"] == "50"  # Haiku 4.5 has its own, larger, token limits
    assert haiku.headers[LIMIT + "input-tokens-limit"] == "50000"
    assert haiku.headers[LIMIT + "output-tokens-limit"] == "10000"
    assert haiku.headers[LIMIT + "requests-remaining"] == "49"


def test_exhausted_requests_give_429_with_retry_after_then_refill_continuously(tight_url: str) -> None:
    with sync_client(tight_url, api_key=unique_key()) as client:
        remaining = [int(create_raw(client).headers[LIMIT + "requests-remaining"]) for _ in range(5)]
        assert remaining == [4, 3, 2, 1, 0]

        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
        error = caught.value
        assert error.type == "rate_limit_error"
        assert "50 requests per minute" in error.message
        retry_after = int(error.response.headers["retry-after"])
        assert 1 <= retry_after <= 2  # one request comes back every 1.2 s
        assert error.response.headers[LIMIT + "requests-remaining"] == "0"

        time.sleep(retry_after)
        refilled = create_raw(client)
        # One request came back, not a fresh window of five: the bucket refills continuously.
        assert int(refilled.headers[LIMIT + "requests-remaining"]) <= 1


def test_pools_are_per_key_and_per_model_class(tight_url: str) -> None:
    key = unique_key()
    with sync_client(tight_url, api_key=key) as client:
        for _ in range(5):
            create_raw(client, model="claude-opus-4-7")
        with pytest.raises(anthropic.RateLimitError):
            create_raw(client, model="claude-opus-4-8")  # Opus 4.x models share one pool
        assert create_raw(client).http_response.status_code == 200  # Sonnet 4.x: a pool of its own
        assert create_raw(client, model="claude-opus-5").http_response.status_code == 200  # Opus 5: its own
        assert (
            client.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens > 0
        )  # limited on its own
    with sync_client(tight_url, api_key=unique_key()) as other:
        assert create_raw(other).http_response.status_code == 200


def test_input_and_output_token_limits_give_429_naming_the_limit(tight_url: str) -> None:
    with sync_client(tight_url, api_key=unique_key()) as client:
        with pytest.raises(anthropic.RateLimitError, match="30,000 input tokens per minute"):
            client.messages.create(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": prose(4000)}]
            )
        # A reply larger than the output bucket is served, then the next request waits for the debt to clear.
        create_raw(client, max_tokens=2000, extra_headers={"x-simulator-reply-tokens": "1000"})
        with pytest.raises(anthropic.RateLimitError, match="8,000 output tokens per minute") as caught:
            create_raw(client)
        assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60


def test_count_tokens_has_its_own_requests_limit(tight_url: str) -> None:
    with sync_client(tight_url, api_key=unique_key()) as client:
        for _ in range(10):  # tier 1: 100 per minute, a tenth of which fits the bucket
            client.messages.count_tokens(model=MODEL, messages=HELLO)
        with pytest.raises(anthropic.RateLimitError, match="token counting requests per minute") as caught:
            client.messages.count_tokens(model=MODEL, messages=HELLO)
        assert caught.value.response.headers["retry-after"] == "1"
        assert create_raw(client).http_response.status_code == 200


def test_cache_reads_do_not_count_towards_input_tokens_per_minute(tier1_url: str) -> None:
    system = [{"type": "text", "text": prose(6000), "cache_control": {"type": "ephemeral"}}]
    with sync_client(tier1_url, api_key=unique_key()) as client:
        write = create_raw(client, model=CACHE_MODEL, system=system)
        read = create_raw(client, model=CACHE_MODEL, system=system)
    assert write.parse().usage.cache_creation_input_tokens >= 6000
    assert read.parse().usage.cache_read_input_tokens >= 6000
    assert write.headers[LIMIT + "input-tokens-remaining"] == "24000"
    assert read.headers[LIMIT + "input-tokens-remaining"] == "24000"  # not 18000: the read was free
