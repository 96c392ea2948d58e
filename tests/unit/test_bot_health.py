from __future__ import annotations

import math

from claudegate.bots.health import HealthStatus, assess
from claudegate.bots.metrics import BotMetrics, RecentValues, quantile
from claudegate.config import BotSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nearest_rank_quantiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) == 50
    assert quantile(values, 0.9) == 90
    assert quantile(values, 0.99) == 99
    assert quantile([3.0], 0.99) == 3
    assert math.isnan(quantile([], 0.5))


def test_recent_values_forget_old_ones() -> None:
    clock = FakeClock()
    recent = RecentValues(window_s=10, clock=clock)
    recent.add(100.0)
    clock.now = 20
    recent.add(1.0)
    recent.add(2.0)
    assert recent.quantiles() == {0.5: 1.0, 0.9: 2.0, 0.99: 2.0}


def test_health_from_queue_use_error_rate_and_connection() -> None:
    settings = BotSettings()
    ok = assess(connected=True, queue_use=0.1, error_rate=0.0, settings=settings)
    assert ok.status is HealthStatus.healthy
    assert (
        assess(connected=True, queue_use=0.8, error_rate=0.0, settings=settings).status
        is HealthStatus.degraded
    )
    assert (
        assess(connected=True, queue_use=0.1, error_rate=0.2, settings=settings).status
        is HealthStatus.degraded
    )
    assert (
        assess(connected=True, queue_use=0.99, error_rate=0.0, settings=settings).status
        is HealthStatus.unhealthy
    )
    assert (
        assess(connected=True, queue_use=0.1, error_rate=0.6, settings=settings).status
        is HealthStatus.unhealthy
    )
    down = assess(connected=False, queue_use=0.0, error_rate=0.0, settings=settings)
    assert down.status is HealthStatus.unhealthy
    assert down.reasons == ("not connected to the chat",)


def test_error_rate_counts_recent_accepted_questions() -> None:
    clock = FakeClock()
    metrics = BotMetrics(clock=clock, window_s=60)
    for _ in range(3):
        metrics.outcome("answered")
    metrics.outcome("trouble")
    metrics.outcome("cooldown")  # turned away: not part of the rate
    assert metrics.error_rate() == 0.25
    clock.now = 61
    assert metrics.error_rate() == 0.0


def test_exposition_has_the_answer_time_quantiles() -> None:
    metrics = BotMetrics()
    for seconds in (1.0, 2.0, 3.0):
        metrics.observe_answer(seconds)
    text = metrics.exposition().decode()
    assert 'claudegate_bot_recent_answer_seconds{quantile="0.5"} 2.0' in text
    assert 'claudegate_bot_recent_answer_seconds{quantile="0.99"} 3.0' in text
    assert "claudegate_bot_answer_seconds_bucket" in text
