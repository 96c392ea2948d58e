"""Sending alerts to webhooks: Slack-compatible (``{"text": …}``) or a plain JSON body, deduplicated and
rate-limited, never on a call's path.

The gateway raises alerts synchronously (an append to a bounded queue); a background task posts them. The
same alert (kind and subject: "breaker_open" of upstream "primary") is sent at most once per ``repeat_s``,
and at most ``max_per_minute`` alerts leave in any minute: an incident that fails thousands of calls sends a
handful of messages, not thousands. Alerts dropped for either reason are logged and counted in the next one
that goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import orjson

from claudegate.alerts.watch import ErrorRateWatch

__all__ = ["Alert", "AlertSettings", "Alerts"]

logger = logging.getLogger(__name__)

_QUEUE_LIMIT = 100
_POST_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class AlertSettings:
    webhooks: tuple[str, ...] = ()
    format: Literal["slack", "json"] = "slack"
    error_rate: float = 0.5
    error_window_s: float = 60.0
    error_min_calls: int = 20
    budget_thresholds: tuple[float, ...] = (0.8, 1.0)
    repeat_s: float = 600.0
    max_per_minute: int = 20


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # error_rate, budget, breaker_open, upstream_throttled
    subject: str  # what it is about: an upstream, a budget
    text: str
    details: dict[str, Any] = field(default_factory=dict)


class Alerts:
    """What the gateway tells operators. ``clock`` is injectable; ``post`` too, for unit tests."""

    def __init__(
        self,
        settings: AlertSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._errors = ErrorRateWatch(settings.error_window_s)
        self._last_sent: dict[tuple[str, str], float] = {}
        self._sent_times: deque[float] = deque()
        self._suppressed = 0
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(_QUEUE_LIMIT)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.webhooks)

    @property
    def pending(self) -> int:
        """Alerts queued and not yet posted."""
        return self._queue.qsize()

    # -- what the gateway reports ----------------------------------------------------------------------

    def observe_call(self, status: int) -> None:
        """Every finished call: a 5xx counts as failed towards the error rate."""
        if not self.enabled:
            return
        now = self._clock()
        failed = status >= 500
        self._errors.observe(now, failed)
        if not failed:
            return
        calls, errors = self._errors.totals(now)
        settings = self.settings
        if calls >= settings.error_min_calls and errors / calls > settings.error_rate:
            window = int(settings.error_window_s)
            self.send(
                Alert(
                    "error_rate",
                    "gateway",
                    f"claudegate: {errors} of the last {calls} calls failed ({errors / calls:.0%} in "
                    f"{window} s; threshold {settings.error_rate:.0%})",
                    {"calls": calls, "errors": errors, "window_s": window},
                )
            )

    def breaker_opened(self, upstream: str, open_s: float) -> None:
        self.send(
            Alert(
                "breaker_open",
                upstream,
                f"claudegate: upstream {upstream} is failing; its circuit breaker opened for {open_s:g} s",
                {"upstream": upstream, "open_s": open_s},
            )
        )

    def upstream_throttled(self, upstream: str, retry_after_s: float | None) -> None:
        wait = f" (retry-after {retry_after_s:g} s)" if retry_after_s is not None else ""
        self.send(
            Alert(
                "upstream_throttled",
                upstream,
                f"claudegate: upstream {upstream} answered 429 rate_limit_error{wait}",
                {"upstream": upstream, "retry_after_s": retry_after_s},
            )
        )

    def budget_spent(self, what: str, period: str, spent: float, limit: float, unit: str) -> None:
        """A budget's counter after a call: an alert for the highest threshold it has reached (once per
        threshold and period)."""
        if not self.enabled or limit <= 0:
            return
        reached = [share for share in self.settings.budget_thresholds if spent >= share * limit]
        if not reached:
            return
        share = max(reached)
        amount = (
            f"{spent:,.0f} of {limit:,.0f} tokens" if unit == "tokens" else f"${spent:,.4f} of ${limit:,.2f}"
        )
        self.send(
            Alert(
                "budget",
                f"{what} {period} {share:g}",
                f"claudegate: the {what} has reached {share:.0%} ({amount})",
                {"budget": what, "period": period, "threshold": share, "spent": spent, "limit": limit},
            )
        )

    # -- sending --------------------------------------------------------------------------------------

    def send(self, alert: Alert) -> None:
        """Queue ``alert`` unless the same one went out within ``repeat_s`` or the rate limit is reached."""
        if not self.enabled:
            return
        now = self._clock()
        key = (alert.kind, alert.subject)
        last = self._last_sent.get(key)
        if last is not None and now - last < self.settings.repeat_s:
            return  # deduplicated: the operator already knows
        while self._sent_times and now - self._sent_times[0] >= 60.0:
            self._sent_times.popleft()
        if len(self._sent_times) >= self.settings.max_per_minute or self._queue.full():
            self._suppressed += 1
            logger.warning("alert not sent (rate limit reached): %s", alert.text)
            return
        self._last_sent[key] = now
        self._sent_times.append(now)
        if self._suppressed:
            alert = Alert(
                alert.kind,
                alert.subject,
                f"{alert.text} ({self._suppressed} earlier alerts were not sent: rate limit)",
                alert.details,
            )
            self._suppressed = 0
        self._queue.put_nowait(alert)

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="claudegate-alerts")

    async def close(self) -> None:
        """Send what is queued (each post bounded by its timeout), then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_POST_TIMEOUT_S))
        while True:
            alert = await self._queue.get()
            try:
                body = self._body(alert)
                for url in self.settings.webhooks:
                    await self._post(url, body)
            finally:
                self._queue.task_done()

    async def _post(self, url: str, body: bytes) -> None:
        assert self._session is not None
        try:
            async with self._session.post(
                url, data=body, headers={"content-type": "application/json"}
            ) as response:
                if response.status >= 300:
                    logger.warning("alert webhook answered %d", response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            logger.warning("alert webhook unreachable: %s", type(error).__name__)

    def _body(self, alert: Alert) -> bytes:
        if self.settings.format == "slack":
            return orjson.dumps({"text": alert.text})
        return orjson.dumps(
            {
                "kind": alert.kind,
                "subject": alert.subject,
                "text": alert.text,
                "details": alert.details,
                "at": datetime.now(UTC).isoformat(),
            }
        )
