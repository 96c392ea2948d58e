"""Tenant settings as stored: which exist on each level, and the checks a value must pass to be stored.

Organisations and users have limits and a weight; keys have limits, a default deadline, a priority and
whether they may act for end users (``act_for_users``) and whether the response cache answers their calls
(``cache_replies``). Every setting is a nullable column, and null means the default: no limit, weight 1.0,
no deadline, priority 0, false (for ``cache_replies``: as the organisation's ``cache_orgs`` entry says).
Changes are given per setting, with :data:`UNSET` for "leave as it is" and None for "back to the default".
The checks accept values straight from JSON (so a bool, a string or 5.5 for a count is refused with a message
naming the setting) and from the command line alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import Final

from claudegate.keys import LimitSet
from claudegate.store.rows import InvalidSettingError

__all__ = [
    "KEY_SETTINGS",
    "LIMIT_SETTINGS",
    "MAX_SETTING",
    "MAX_WEIGHT",
    "MIN_WEIGHT",
    "ORG_SETTINGS",
    "UNSET",
    "USER_SETTINGS",
    "Unset",
    "check_setting",
    "checked_changes",
    "limit_set",
]


class Unset(Enum):
    """The type of :data:`UNSET`, a setting not given (as opposed to None, which clears it)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET

MAX_SETTING: Final = 2_147_483_647  # the columns are 32-bit integers
MIN_WEIGHT: Final = 0.000001  # a weight divides a share: keep the ratio between two weights finite
MAX_WEIGHT: Final = 1_000_000.0

LIMIT_SETTINGS: Final = ("requests_per_minute", "tokens_per_minute", "max_concurrency")
ORG_SETTINGS: Final = (*LIMIT_SETTINGS, "weight")
USER_SETTINGS: Final = ORG_SETTINGS
KEY_SETTINGS: Final = (*LIMIT_SETTINGS, "deadline_ms", "priority", "act_for_users", "cache_replies")


def _shown(value: object) -> str:
    """A refused value as the caller wrote it (JSON's true and false, a string in quotes)."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SETTING:
        raise InvalidSettingError(
            name, f"must be a whole number from 1 to {MAX_SETTING}; got {_shown(value)}"
        )
    return value


def _priority(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -MAX_SETTING <= value <= MAX_SETTING:
        raise InvalidSettingError(
            name, f"must be a whole number from {-MAX_SETTING} to {MAX_SETTING}; got {_shown(value)}"
        )
    return value


def _weight(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not MIN_WEIGHT <= value <= MAX_WEIGHT
    ):
        raise InvalidSettingError(
            name, f"must be a number from {MIN_WEIGHT:f} to {MAX_WEIGHT:.0f}; got {_shown(value)}"
        )
    return float(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidSettingError(name, f"must be true or false; got {_shown(value)}")
    return value


_CHECKS: Final = {
    "requests_per_minute": _positive,
    "tokens_per_minute": _positive,
    "max_concurrency": _positive,
    "deadline_ms": _positive,
    "priority": _priority,
    "weight": _weight,
    "act_for_users": _flag,
    "cache_replies": _flag,
}


def check_setting(name: str, value: object) -> int | float | bool | None:
    """``value`` if it may be stored as setting ``name`` (None clears it); InvalidSettingError otherwise."""
    if value is None:
        return None
    check = _CHECKS.get(name)
    if check is None:
        raise InvalidSettingError(name, "is not a setting")
    return check(name, value)


def checked_changes(changes: Mapping[str, object]) -> dict[str, int | float | bool | None]:
    """The given changes (UNSET ones left out), each checked, as column values for an UPDATE."""
    return {name: check_setting(name, value) for name, value in changes.items() if value is not UNSET}


def limit_set(
    requests_per_minute: int | None, tokens_per_minute: int | None, max_concurrency: int | None
) -> LimitSet:
    """A LimitSet from three stored columns, sharing one instance when none is set."""
    if requests_per_minute is None and tokens_per_minute is None and max_concurrency is None:
        return _NO_LIMITS
    return LimitSet(requests_per_minute, tokens_per_minute, max_concurrency)


_NO_LIMITS: Final = LimitSet()
