"""The state and refusal series the dashboard and alerts read, as /metrics renders them."""

from __future__ import annotations

from claudegate.accounting.metrics import GatewayMetrics


def test_refusals_queues_and_breakers_are_rendered() -> None:
    metrics = GatewayMetrics()
    metrics.refused("rate_limit_error")
    metrics.refused("rate_limit_error")
    metrics.refused("billing_error")
    metrics.set_state(
        [("main", "sonnet-4", 7, 3), ("backup", "sonnet-4", 0, 1)],
        [("main", "open"), ("backup", "half_open")],
    )
    text = metrics.render().decode()
    assert 'claudegate_refusals_total{error_type="rate_limit_error"} 2.0' in text
    assert 'claudegate_refusals_total{error_type="billing_error"} 1.0' in text
    assert 'claudegate_queue_waiting_calls{rate_class="sonnet-4",upstream="main"} 7.0' in text
    assert 'claudegate_queue_in_flight_calls{rate_class="sonnet-4",upstream="backup"} 1.0' in text
    assert 'claudegate_upstream_breaker_state{upstream="main"} 2.0' in text
    assert 'claudegate_upstream_breaker_state{upstream="backup"} 1.0' in text
    metrics.set_state([("main", "sonnet-4", 0, 0)], [("main", "closed")])
    text = metrics.render().decode()
    assert 'claudegate_queue_waiting_calls{rate_class="sonnet-4",upstream="main"} 0.0' in text
    assert 'claudegate_upstream_breaker_state{upstream="main"} 0.0' in text
