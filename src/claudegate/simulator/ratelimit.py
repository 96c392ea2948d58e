"""Per-key rate limiting with Anthropic's buckets, headers and 429 messages."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from claudegate.errors import RateLimitError
from claudegate.flow.bucket import TokenBucket
from claudegate.wire.tiers import COUNT_TOKENS_RPM, limits_for

__all__ = ["KeyBuckets", "RateLimiter"]

_DOCS = "For details, refer to: https://docs.claude.com/en/api/rate-limits."


def _rfc3339(epoch: float) -> str:
    return _rfc3339_second(math.ceil(epoch))


@functools.lru_cache(maxsize=512)
def _rfc3339_second(second: int) -> str:
    # Resets fall on a few distinct seconds at a time; formatting dates was a tenth of a reply's CPU.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round_thousand(value: float) -> int:
    # The API rounds remaining token counts to the nearest thousand.
    return max(0, round(value / 1000) * 1000)


@dataclass(slots=True)
class KeyBuckets:
    requests: TokenBucket
    input_tokens: TokenBucket
    output_tokens: TokenBucket
    limits: tuple[str, str, str, str] = ("", "", "", "")  # the *-limit header values, which never change

    def __post_init__(self) -> None:
        inp, out = self.input_tokens.rate * 60, self.output_tokens.rate * 60
        self.limits = (
            str(round(self.requests.rate * 60)),
            str(round(inp)),
            str(round(out)),
            str(round(inp + out)),
        )

    def headers(self, now: float, wall: float) -> list[tuple[str, str]]:
        req, inp, out = self.requests, self.input_tokens, self.output_tokens
        inp_level, out_level = inp.level(now), out.level(now)
        inp_reset = wall + inp.seconds_to_full(now)
        out_reset = wall + out.seconds_to_full(now)
        req_limit, inp_limit, out_limit, all_limit = self.limits
        prefix = "anthropic-ratelimit-"
        return [
            (prefix + "requests-limit", req_limit),
            (prefix + "requests-remaining", str(max(0, math.floor(req.level(now))))),
            (prefix + "requests-reset", _rfc3339(wall + req.seconds_to_full(now))),
            (prefix + "input-tokens-limit", inp_limit),
            (prefix + "input-tokens-remaining", str(_round_thousand(inp_level))),
            (prefix + "input-tokens-reset", _rfc3339(inp_reset)),
            (prefix + "output-tokens-limit", out_limit),
            (prefix + "output-tokens-remaining", str(_round_thousand(out_level))),
            (prefix + "output-tokens-reset", _rfc3339(out_reset)),
            (prefix + "tokens-limit", all_limit),
            (prefix + "tokens-remaining", str(_round_thousand(inp_level + out_level))),
            (prefix + "tokens-reset", _rfc3339(max(inp_reset, out_reset))),
        ]


class RateLimiter:
    """Buckets per (API key, model rate class), plus a separate requests bucket for count_tokens."""

    __slots__ = ("_buckets", "_burst", "_clock", "_count_buckets", "_tier", "_wall")

    def __init__(
        self,
        tier: str,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._tier = tier
        self._burst = burst
        self._clock = clock
        self._wall = wall
        self._buckets: dict[tuple[str, str], KeyBuckets] = {}
        self._count_buckets: dict[str, TokenBucket] = {}

    def buckets(self, api_key: str, rate_class: str) -> KeyBuckets:
        found = self._buckets.get((api_key, rate_class))
        if found is None:
            limits = limits_for(self._tier, rate_class)
            now = self._clock()

            def bucket(per_minute: int) -> TokenBucket:
                return TokenBucket(per_minute * self._burst, per_minute / 60.0, now)

            found = KeyBuckets(
                bucket(limits.requests_per_minute),
                bucket(limits.input_tokens_per_minute),
                bucket(limits.output_tokens_per_minute),
            )
            self._buckets[(api_key, rate_class)] = found
        return found

    def admit(self, api_key: str, rate_class: str, input_tokens: int) -> list[tuple[str, str]]:
        """Take one request and the input tokens, or raise a 429 naming the exhausted limit.

        Output tokens are counted afterwards (``charge_output``); a request is refused while the output
        bucket is empty, as the API does once a burst of long replies has used the minute's allowance.
        Returns the rate-limit headers to send with the reply.
        """
        buckets = self.buckets(api_key, rate_class)
        now = self._clock()
        checks = (
            (buckets.requests, 1, "requests"),
            (buckets.input_tokens, input_tokens, "input tokens"),
            (buckets.output_tokens, 1, "output tokens"),
        )
        for bucket, amount, unit in checks:
            wait = bucket.wait_for(amount, now)
            if wait > 0:
                limit = round(bucket.rate * 60)
                raise RateLimitError(
                    f"This request would exceed the rate limit for your organization of {limit:,} {unit} "
                    f"per minute. {_DOCS} You can see the response headers for current usage. Please reduce "
                    "the prompt length or the maximum tokens requested, or try again later.",
                    retry_after=max(1, math.ceil(min(wait, 60.0))),
                    headers=buckets.headers(now, self._wall()),
                )
        buckets.requests.try_take(1, now)
        buckets.input_tokens.charge(input_tokens, now)
        return buckets.headers(now, self._wall())

    def charge_output(self, api_key: str, rate_class: str, output_tokens: int) -> None:
        self.buckets(api_key, rate_class).output_tokens.charge(output_tokens, self._clock())

    def headers(self, api_key: str, rate_class: str) -> list[tuple[str, str]]:
        return self.buckets(api_key, rate_class).headers(self._clock(), self._wall())

    def admit_count_tokens(self, api_key: str) -> None:
        bucket = self._count_buckets.get(api_key)
        now = self._clock()
        if bucket is None:
            rpm = COUNT_TOKENS_RPM[self._tier]
            bucket = self._count_buckets[api_key] = TokenBucket(rpm * self._burst, rpm / 60.0, now)
        if not bucket.try_take(1, now):
            raise RateLimitError(
                f"This request would exceed the rate limit for your organization of "
                f"{round(bucket.rate * 60):,} token counting requests per minute. {_DOCS}",
                retry_after=max(1, math.ceil(bucket.wait_for(1, now))),
            )
