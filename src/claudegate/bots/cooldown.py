"""One question per viewer per period, with a clock that tests move by hand."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Cooldowns"]

_PRUNE_EVERY = 1024  # entries added between sweeps of expired ones


class Cooldowns:
    """When each viewer may ask again. Expired entries are swept now and then, so a long stream with many
    viewers does not grow the table for ever."""

    __slots__ = ("_clock", "_seconds", "_since_prune", "_until")

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._until: dict[str, float] = {}
        self._since_prune = 0

    def remaining(self, viewer: str) -> float:
        """Seconds until ``viewer`` may ask again; 0 when they may now."""
        until = self._until.get(viewer)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[viewer]
            return 0.0
        return left

    def start(self, viewer: str, seconds: float | None = None) -> None:
        """``viewer`` has asked: they may ask again after the period (or ``seconds``)."""
        period = self._seconds if seconds is None else seconds
        if period <= 0:
            self._until.pop(viewer, None)
            return
        self._until[viewer] = self._clock() + period
        self._since_prune += 1
        if self._since_prune >= _PRUNE_EVERY:
            self._prune()

    def clear(self, viewer: str) -> None:
        self._until.pop(viewer, None)

    def __len__(self) -> int:
        return len(self._until)

    def _prune(self) -> None:
        now = self._clock()
        self._until = {viewer: until for viewer, until in self._until.items() if until > now}
        self._since_prune = 0
