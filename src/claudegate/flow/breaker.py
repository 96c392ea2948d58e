"""A circuit breaker per upstream: closed, open, half-open.

Closed: calls flow; ``failure_threshold`` consecutive failures open it. Open: calls are refused for
``open_seconds``, so a failing upstream is left alone and traffic fails over. Half-open: after that time, up
to ``half_open_probes`` calls go through as probes; one success closes the breaker, one failure opens it
again. The clock is passed in, so tests move time instead of sleeping.

A health probe that passes (``passed_probe``) closes the breaker *on trial*: a health check is not a call,
and an upstream can answer it while its calls still fail (``GET /v1/models`` works while ``/v1/messages``
answers 500). Until a real call succeeds, the first failure opens the breaker again at once, rather than
after ``failure_threshold`` more callers have paid for the probe's optimism.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    __slots__ = (
        "_failures",
        "_on_trial",
        "_opened_at",
        "_probes",
        "_state",
        "failure_threshold",
        "half_open_probes",
        "open_seconds",
    )

    def __init__(
        self, *, failure_threshold: int = 5, open_seconds: float = 30.0, half_open_probes: int = 1
    ) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.half_open_probes = half_open_probes
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0
        self._on_trial = False

    def state(self, now: float) -> BreakerState:
        if self._state is BreakerState.OPEN and now - self._opened_at >= self.open_seconds:
            self._state = BreakerState.HALF_OPEN
            self._probes = 0
        return self._state

    def allow(self, now: float) -> bool:
        """Whether a call may go to this upstream now (a half-open breaker admits a few probes)."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes < self.half_open_probes:
            self._probes += 1
            return True
        return False

    def release_probe(self) -> None:
        """A probe ``allow`` let through ended without telling whether the upstream works (it was cancelled
        or throttled before a reply): another call may probe in its place."""
        if self._state is BreakerState.HALF_OPEN and self._probes > 0:
            self._probes -= 1

    @property
    def on_trial(self) -> bool:
        """Closed by a health probe, and no real call has succeeded since."""
        return self._on_trial

    def record_success(self) -> bool:
        """Count a real call's success; True when it closed an open or half-open breaker."""
        reopened = self._state is not BreakerState.CLOSED
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._on_trial = False
        return reopened

    def passed_probe(self) -> None:
        """A health probe found the upstream answering: let calls through, on trial (see the module)."""
        self.record_success()
        self._on_trial = True

    def record_failure(self, now: float) -> bool:
        """Count a failure; True when it opened the breaker (so the news can be shared)."""
        if self._on_trial or self.state(now) is BreakerState.HALF_OPEN:
            self._open(now)
            return True
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open(now)
            return True
        return False

    def force_open(self, now: float, seconds: float) -> None:
        """Open for ``seconds`` because another gateway process found the upstream failing."""
        if self.state(now) is BreakerState.CLOSED:
            self._state = BreakerState.OPEN
            self._opened_at = now - max(0.0, self.open_seconds - seconds)
            self._failures = 0

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._failures = 0
        self._on_trial = False

    def retry_in(self, now: float) -> float:
        """Seconds until an open breaker lets a probe through (0 when it is not open)."""
        if self.state(now) is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.open_seconds - now)
