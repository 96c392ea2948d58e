"""The fault header ``KIND[:ARG][;times=N]`` and random fault rates."""

from __future__ import annotations

import random

import pytest

from claudegate.errors import (
    ApiError,
    BillingError,
    GatewayTimeoutError,
    InvalidRequestError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
)
from claudegate.simulator.faults import Fault, FaultInjector, error_of_type
from claudegate.simulator.settings import FaultRate, parse_fault_rate


def injector(*rates: FaultRate, seed: int = 0) -> FaultInjector:
    return FaultInjector(rates, random.Random(seed))


@pytest.mark.parametrize(
    ("header", "fault"),
    [
        ("overloaded", Fault("overloaded")),
        ("rate_limit:2.5", Fault("rate_limit", "2.5")),
        ("slow:0.1", Fault("slow", "0.1")),
        ("midstream_error:api_error", Fault("midstream_error", "api_error")),
        (" drop_connection ; times=3", Fault("drop_connection")),
        ("refusal", Fault("refusal")),
        ("refusal:bio", Fault("refusal", "bio")),
        ("pause_turn;times=1", Fault("pause_turn")),
        ("model_context_window_exceeded", Fault("model_context_window_exceeded")),
    ],
)
def test_header_names_a_fault(header: str, fault: Fault) -> None:
    assert injector().choose(header, b"{}") == fault


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("meltdown", "unknown fault 'meltdown'"),
        ("slow:soon", "'soon' is not a number of seconds"),
        ("rate_limit:x", "'x' is not a number of seconds"),
        ("overloaded;times=twice", "times='twice' is not a whole number"),
        ("midstream_error:bad_error", "'bad_error' is not an error type"),
        ("refusal:rude", "'rude' is not a refusal category"),
    ],
)
def test_bad_headers_are_400(header: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        injector().choose(header, b"{}")


def test_times_counts_per_header_and_body() -> None:
    faults = injector()
    header = "overloaded;times=2"
    assert [faults.choose(header, b"a") is not None for _ in range(3)] == [True, True, False]
    assert faults.choose(header, b"b") is not None  # another body has its own count
    assert faults.choose("overloaded;times=1", b"a") is not None  # and so has another header


@pytest.mark.parametrize(
    ("fault", "error_class", "status"),
    [
        (Fault("overloaded"), OverloadedError, 529),
        (Fault("server_error"), ApiError, 500),
        (Fault("timeout"), GatewayTimeoutError, 504),
        (Fault("billing"), BillingError, 402),
        (Fault("permission"), PermissionDeniedError, 403),
        (Fault("rate_limit", "3"), RateLimitError, 429),
    ],
)
def test_error_faults_become_errors(fault: Fault, error_class: type, status: int) -> None:
    error = fault.as_error()
    assert isinstance(error, error_class)
    assert error.status == status


def test_rate_limit_fault_carries_its_retry_time_and_other_faults_are_not_errors() -> None:
    error = Fault("rate_limit", "3").as_error()
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 3.0
    assert isinstance(Fault("rate_limit").as_error(), RateLimitError)
    for kind in ("slow", "midstream_error", "drop_connection"):
        assert Fault(kind).as_error() is None
    assert Fault("slow", "2.5").slow_seconds == 2.5
    assert Fault("slow").slow_seconds == 1.0
    assert Fault("overloaded").slow_seconds == 0


def test_error_of_type_maps_api_error_types() -> None:
    assert isinstance(error_of_type("overloaded_error"), OverloadedError)
    assert error_of_type("overloaded_error").message == "Overloaded"
    assert error_of_type("api_error").status == 500
    assert error_of_type("rate_limit_error").status == 429
    assert error_of_type("something_new").status == 500


def test_random_rates_follow_the_seed_and_the_rate() -> None:
    faults = injector(FaultRate("overloaded", 0.3), seed=1)
    chosen = [faults.choose(None, b"") for _ in range(2000)]
    share = sum(f is not None for f in chosen) / len(chosen)
    assert 0.25 < share < 0.35
    again = injector(FaultRate("overloaded", 0.3), seed=1)
    assert [again.choose(None, b"") for _ in range(2000)] == chosen
    assert injector(FaultRate("overloaded", 0.0)).choose(None, b"") is None
    assert injector(FaultRate("slow", 1.0, "2")).choose(None, b"") == Fault("slow", "2")


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("overloaded=0.1", FaultRate("overloaded", 0.1)),
        ("slow:2.5=0.05", FaultRate("slow", 0.05, "2.5")),
        ("refusal:cyber=0.01", FaultRate("refusal", 0.01, "cyber")),
    ],
)
def test_parse_fault_rate(text: str, rate: FaultRate) -> None:
    assert parse_fault_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "message"),
    [("overloaded", "expected KIND=RATE"), ("nope=0.1", "unknown kind"), ("slow=x", "not a number"),
     ("slow=1.5", "between 0 and 1"), ("refusal:rude=0.1", "not a refusal category")],
)  # fmt: skip
def test_parse_fault_rate_refuses_bad_specs(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault_rate(text)
