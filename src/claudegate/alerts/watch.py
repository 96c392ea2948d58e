"""The share of calls that failed over the last minute (or whatever window), in one-second buckets."""

from __future__ import annotations

__all__ = ["ErrorRateWatch"]


class ErrorRateWatch:
    """Counts calls and failed calls per second over ``window_s`` seconds: O(1) per call, bounded memory."""

    __slots__ = ("_calls", "_errors", "_seconds", "_window")

    def __init__(self, window_s: float) -> None:
        self._window = max(1, int(window_s))
        self._calls = [0] * self._window
        self._errors = [0] * self._window
        self._seconds = [-1] * self._window  # which second each slot counts

    def observe(self, now: float, failed: bool) -> None:
        second = int(now)
        slot = second % self._window
        if self._seconds[slot] != second:
            self._seconds[slot] = second
            self._calls[slot] = 0
            self._errors[slot] = 0
        self._calls[slot] += 1
        if failed:
            self._errors[slot] += 1

    def totals(self, now: float) -> tuple[int, int]:
        """Calls and failed calls in the window that ends at ``now``."""
        oldest = int(now) - self._window
        calls = errors = 0
        for slot, second in enumerate(self._seconds):
            if second > oldest:
                calls += self._calls[slot]
                errors += self._errors[slot]
        return calls, errors
