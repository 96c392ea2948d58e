"""The checks every tenant setting passes before it is stored, whichever front end it came from."""

from __future__ import annotations

import math

import pytest

from claudegate.store import UNSET, InvalidSettingError
from claudegate.store.settings import check_setting, checked_changes


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("requests_per_minute", 1),
        ("tokens_per_minute", 2_147_483_647),
        ("max_concurrency", 64),
        ("deadline_ms", 30_000),
        ("priority", 0),
        ("priority", -10),
        ("priority", 10),
        ("weight", 0.5),
        ("weight", 3),
        ("requests_per_minute", None),
        ("weight", None),
    ],
)
def test_accepted_values(name: str, value: object) -> None:
    assert check_setting(name, value) == value


def test_an_integer_weight_is_stored_as_a_float() -> None:
    weight = check_setting("weight", 2)
    assert isinstance(weight, float)
    assert weight == 2.0


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("requests_per_minute", 0, "requests_per_minute: must be a whole number from 1 to 2147483647; got 0"),
        ("tokens_per_minute", -5, "tokens_per_minute: must be a whole number from 1"),
        ("max_concurrency", 1.5, "max_concurrency: must be a whole number from 1 to 2147483647; got 1.5"),
        ("max_concurrency", True, "got true"),
        ("deadline_ms", "30000", "deadline_ms: must be a whole number from 1 to 2147483647; got '30000'"),
        ("deadline_ms", 2_147_483_648, "deadline_ms: must be a whole number"),
        ("priority", 0.5, "priority: must be a whole number from -2147483647 to 2147483647"),
        ("priority", False, "priority: must be a whole number"),
        ("weight", 0, "weight: must be a number from 0.000001 to 1000000; got 0"),
        ("weight", -1.0, "weight: must be a number"),
        ("weight", math.inf, "weight: must be a number"),
        ("weight", math.nan, "weight: must be a number"),
        ("weight", "2", "weight: must be a number"),
        ("colour", 1, "colour: is not a setting"),
    ],
)
def test_refused_values_name_the_setting(name: str, value: object, fragment: str) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        check_setting(name, value)
    assert fragment in str(caught.value)
    assert caught.value.setting == name


def test_changes_leave_out_what_was_not_given_and_keep_none_to_clear() -> None:
    changes = checked_changes(
        {"requests_per_minute": 10, "tokens_per_minute": UNSET, "max_concurrency": None, "weight": UNSET}
    )
    assert changes == {"requests_per_minute": 10, "max_concurrency": None}
