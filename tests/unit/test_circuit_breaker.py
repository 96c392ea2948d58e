from claudegate.flow.breaker import BreakerState, CircuitBreaker


def test_consecutive_failures_open_the_breaker_and_refuse_calls() -> None:
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=10.0)
    for _ in range(2):
        breaker.record_failure(now=0.0)
    assert breaker.allow(now=0.0)
    breaker.record_failure(now=0.0)
    assert breaker.state(now=1.0) is BreakerState.OPEN
    assert not breaker.allow(now=1.0)
    assert breaker.retry_in(now=4.0) == 6.0


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    breaker.record_failure(now=0.0)
    breaker.record_success()
    breaker.record_failure(now=0.0)
    assert breaker.state(now=0.0) is BreakerState.CLOSED


def test_half_open_admits_one_probe_whose_outcome_decides() -> None:
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=5.0, half_open_probes=1)
    breaker.record_failure(now=0.0)
    assert breaker.state(now=5.0) is BreakerState.HALF_OPEN
    assert breaker.allow(now=5.0)
    assert not breaker.allow(now=5.0)  # only one probe at a time
    breaker.record_failure(now=5.5)
    assert breaker.state(now=6.0) is BreakerState.OPEN
    assert breaker.allow(now=10.5)  # half-open again after another open period
    breaker.record_success()
    assert breaker.state(now=10.6) is BreakerState.CLOSED
    assert breaker.allow(now=10.6)


def test_a_breaker_opened_elsewhere_is_adopted_for_the_time_left() -> None:
    breaker = CircuitBreaker(failure_threshold=5, open_seconds=30.0)
    breaker.force_open(now=100.0, seconds=10.0)
    assert not breaker.allow(now=105.0)
    assert breaker.retry_in(now=105.0) == 5.0
    assert breaker.state(now=110.0) is BreakerState.HALF_OPEN


def test_only_transitions_are_reported() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    assert breaker.record_failure(now=0.0) is False
    assert breaker.record_failure(now=0.0) is True  # this one opened it
    assert breaker.record_success() is True  # and this one closed it
    assert breaker.record_success() is False


def test_a_passed_health_probe_closes_the_breaker_on_trial_until_a_call_succeeds() -> None:
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=5.0)
    for _ in range(3):
        breaker.record_failure(now=0.0)
    assert breaker.state(now=5.0) is BreakerState.HALF_OPEN
    breaker.passed_probe()
    assert breaker.state(now=5.0) is BreakerState.CLOSED
    assert breaker.on_trial
    # The probe's optimism is tested by the first real call: its failure reopens at once, not after three.
    assert breaker.record_failure(now=6.0) is True
    assert breaker.state(now=6.0) is BreakerState.OPEN
    assert not breaker.on_trial

    breaker.passed_probe()
    assert breaker.record_success() is False  # already closed: nothing to tell the other processes
    assert not breaker.on_trial
    for _ in range(2):
        assert breaker.record_failure(now=20.0) is False  # off trial: the threshold applies again
    assert breaker.state(now=20.0) is BreakerState.CLOSED
