"""Alerts are deduplicated per kind and subject, rate-limited per minute, and the error rate counts only the
calls of its window."""

from __future__ import annotations

from claudegate.alerts import Alert, Alerts, AlertSettings, ErrorRateWatch


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def alerts(clock: Clock, **overrides: object) -> Alerts:
    settings = AlertSettings(webhooks=("http://127.0.0.1:9/hook",), **overrides)  # type: ignore[arg-type]
    return Alerts(settings, clock=clock)


async def test_the_same_alert_goes_out_once_per_repeat_period() -> None:
    clock = Clock()
    sender = alerts(clock, repeat_s=600.0)
    for _ in range(5):
        sender.breaker_opened("primary", 30)
    sender.breaker_opened("secondary", 30)
    assert sender.pending == 2
    clock.now += 600
    sender.breaker_opened("primary", 30)
    assert sender.pending == 3


async def test_no_more_than_the_rate_limit_leave_in_a_minute() -> None:
    clock = Clock()
    sender = alerts(clock, max_per_minute=3)
    for index in range(10):
        sender.send(Alert("upstream_throttled", f"upstream-{index}", "429"))
    assert sender.pending == 3
    clock.now += 60
    sender.send(Alert("upstream_throttled", "later", "429"))
    assert sender.pending == 4


async def test_the_error_rate_alerts_past_its_threshold_with_enough_calls() -> None:
    clock = Clock()
    sender = alerts(clock, error_rate=0.5, error_min_calls=4)
    for status in (200, 500, 500):
        sender.observe_call(status)
    assert sender.pending == 0  # too few calls to judge
    sender.observe_call(500)
    assert sender.pending == 1


async def test_budget_thresholds_alert_once_each() -> None:
    sender = alerts(Clock())
    sender.budget_spent("daily token budget of organisation acme", "d20261206", 700, 1000, "tokens")
    assert sender.pending == 0
    for spent in (800, 850, 900):
        sender.budget_spent("daily token budget of organisation acme", "d20261206", spent, 1000, "tokens")
    assert sender.pending == 1
    sender.budget_spent("daily token budget of organisation acme", "d20261206", 1000, 1000, "tokens")
    assert sender.pending == 2


def test_the_error_window_forgets_old_seconds() -> None:
    watch = ErrorRateWatch(window_s=10)
    watch.observe(100.0, failed=True)
    watch.observe(105.5, failed=False)
    assert watch.totals(106.0) == (2, 1)
    assert watch.totals(110.5) == (1, 0)
    watch.observe(111.0, failed=True)  # the slot second 101 used: 100 and 101 are out of the window
    assert watch.totals(111.0) == (2, 1)


def test_without_webhooks_nothing_is_queued() -> None:
    sender = Alerts(AlertSettings(), clock=Clock())
    sender.breaker_opened("primary", 30)
    sender.observe_call(500)
    assert sender.pending == 0
