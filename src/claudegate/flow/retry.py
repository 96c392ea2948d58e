"""Retry policy as small pure functions, tested with a table (the shape the official SDK uses).

What is retried: 429, 5xx and 529 answers, connection errors and timeouts that happen before the first byte
of the reply reached the client. Any other 4xx says the request itself is wrong (or not allowed), so another
try gets the same answer and costs the upstream a call: it is never retried. An upstream's
``x-should-retry: false`` stops a retry the status would allow.
How long to wait: the upstream's ``retry-after-ms`` or ``retry-after`` when given, otherwise capped
exponential backoff with jitter. Whether to wait at all is the caller's question: only while the call's
deadline still allows the wait plus the call.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["RetryPolicy", "retry_after_seconds", "should_retry_status"]


def should_retry_status(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an error reply may be retried: a 429 or a 5xx, unless the upstream says not to."""
    if status != 429 and status < 500:
        return False
    return headers.get("x-should-retry") != "false"


def retry_after_seconds(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """The wait the upstream asked for: ``retry-after-ms``, else ``retry-after`` (seconds or a date)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, float(email.utils.mktime_tz(parsed)) - now())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4  # the first try included
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.25  # a delay is scaled by a factor drawn from [1 - jitter, 1]

    def backoff(self, retries_done: int, random_unit: float) -> float:
        """Exponential backoff for the next retry; ``random_unit`` is a draw from [0, 1)."""
        delay = min(self.initial_delay_s * 2.0 ** min(retries_done, 30), self.max_delay_s)
        return delay * (1 - self.jitter * random_unit)

    def delay(self, retries_done: int, headers: Mapping[str, str], random_unit: float) -> float:
        """The wait before the next attempt: what the upstream asked for, else backoff."""
        asked = retry_after_seconds(headers)
        if asked is not None and asked > 0:
            return asked
        return self.backoff(retries_done, random_unit)

    def may_retry(self, attempts_done: int, wait_s: float, now: float, deadline: float) -> bool:
        """Whether another attempt fits: attempts left, and the wait ends before the deadline."""
        return attempts_done < self.max_attempts and now + wait_s < deadline
