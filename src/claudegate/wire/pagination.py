"""Anthropic's cursor pagination (``before_id`` / ``after_id`` / ``limit``) over an ordered list."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from claudegate.errors import InvalidRequestError

__all__ = ["page_params", "paginate"]

T = TypeVar("T")


def page_params(query: Mapping[str, str], default_limit: int = 20) -> tuple[str | None, str | None, int]:
    """Read and check ``before_id``, ``after_id`` and ``limit`` (1 to 1000) from a query string."""
    before_id = query.get("before_id") or None
    after_id = query.get("after_id") or None
    if before_id and after_id:
        raise InvalidRequestError("before_id and after_id cannot both be set")
    raw_limit = query.get("limit")
    try:
        limit = int(raw_limit) if raw_limit else default_limit
    except ValueError:
        raise InvalidRequestError("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise InvalidRequestError(
            "limit: Input should be greater than or equal to 1 and less than or equal to 1000"
        )
    return before_id, after_id, limit


def paginate(
    items: Sequence[T],
    id_of: Callable[[T], str],
    to_api: Callable[[T], dict[str, Any]],
    *,
    before_id: str | None,
    after_id: str | None,
    limit: int,
) -> dict[str, Any]:
    """One page in the API's shape: ``{"data", "has_more", "first_id", "last_id"}``."""
    ids = [id_of(item) for item in items]
    if after_id is not None:
        start = ids.index(after_id) + 1 if after_id in ids else len(ids)
        page = items[start : start + limit]
        has_more = start + limit < len(items)
    elif before_id is not None:
        end = ids.index(before_id) if before_id in ids else 0
        page = items[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        page = items[:limit]
        has_more = limit < len(items)
    data = [to_api(item) for item in page]
    return {
        "data": data,
        "has_more": has_more,
        "first_id": id_of(page[0]) if page else None,
        "last_id": id_of(page[-1]) if page else None,
    }
