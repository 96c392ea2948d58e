"""The query of ``GET /v1/models``: which lifecycle stages to list.

The SDK sends a list as ``lifecycle[]=active&lifecycle[]=retired`` (brackets); other clients repeat
``lifecycle=`` or separate values with commas. All three are read. Without the parameter the list holds the
``active`` and ``deprecated`` models; ``retired`` ones appear only when asked for.
"""

from __future__ import annotations

from collections.abc import Iterable

from claudegate.errors import InvalidRequestError
from claudegate.wire.models import DEFAULT_LIFECYCLES, LIFECYCLES

__all__ = ["lifecycle_filter"]

_NAMES = ("lifecycle", "lifecycle[]")


def lifecycle_filter(query: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The lifecycle stages to list, from the query's (name, value) pairs; 400 for an unknown stage."""
    wanted: set[str] = set()
    for name, value in query:
        if name not in _NAMES:
            continue
        for part in value.split(","):
            stage = part.strip()
            if stage not in LIFECYCLES:
                raise InvalidRequestError(
                    f"lifecycle: Input should be 'active', 'deprecated' or 'retired', got {stage!r}"
                )
            wanted.add(stage)
    return frozenset(wanted) if wanted else DEFAULT_LIFECYCLES
