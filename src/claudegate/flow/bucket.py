"""A continuously refilled token bucket, the model Anthropic uses for its own rate limits.

The bucket holds up to ``capacity`` tokens and gains ``rate`` tokens per second; there are no fixed windows.
Time is passed in by the caller (the event loop's clock in production, a number in tests), so the bucket is
pure arithmetic and tests never sleep.
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket"]


class TokenBucket:
    __slots__ = ("_level", "_updated", "capacity", "rate")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("a token bucket needs a positive capacity and refill rate")
        self.capacity = capacity
        self.rate = rate
        self._level = capacity
        self._updated = now

    def level(self, now: float) -> float:
        """Tokens available at ``now``; negative after a debt was charged (see ``charge``)."""
        if now > self._updated:
            self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
            self._updated = now
        return self._level

    def try_take(self, amount: float, now: float) -> bool:
        """Take ``amount`` if it is available now; take nothing otherwise."""
        if self.level(now) >= amount:
            self._level -= amount
            return True
        return False

    def charge(self, amount: float, now: float) -> None:
        """Take ``amount`` even if that leaves a debt (for output, which is counted after the fact)."""
        self.level(now)
        self._level -= amount

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` tokens are available (``inf``: more than the bucket can ever hold)."""
        if amount > self.capacity:
            return math.inf
        deficit = amount - self.level(now)
        return max(0.0, deficit / self.rate)

    def seconds_to_full(self, now: float) -> float:
        return max(0.0, (self.capacity - self.level(now)) / self.rate)
