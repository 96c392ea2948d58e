"""Anthropic's cursor pagination over an ordered list."""

from __future__ import annotations

from typing import Any

import pytest

from claudegate.errors import InvalidRequestError
from claudegate.wire.pagination import page_params, paginate

ITEMS = [f"id{i}" for i in range(7)]


def page(**cursor: Any) -> dict[str, Any]:
    args = {"before_id": None, "after_id": None, "limit": 3} | cursor
    return paginate(ITEMS, lambda i: i, lambda i: {"id": i}, **args)


def ids(result: dict[str, Any]) -> list[str]:
    return [item["id"] for item in result["data"]]


def test_first_page_and_following_pages_cover_everything_once() -> None:
    seen: list[str] = []
    result = page()
    while True:
        seen += ids(result)
        assert result["first_id"] == ids(result)[0]
        assert result["last_id"] == ids(result)[-1]
        if not result["has_more"]:
            break
        result = page(after_id=result["last_id"])
    assert seen == ITEMS


def test_before_id_walks_backwards() -> None:
    assert ids(page(before_id="id6")) == ["id3", "id4", "id5"]
    assert page(before_id="id6")["has_more"] is True
    assert ids(page(before_id="id2")) == ["id0", "id1"]
    assert page(before_id="id2")["has_more"] is False


def test_exact_fit_has_no_more_and_empty_pages_have_null_ids() -> None:
    assert page(limit=7)["has_more"] is False
    assert page(limit=6)["has_more"] is True
    empty = page(after_id="id6")
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    assert ids(page(after_id="unknown")) == []


def test_page_params_reads_and_checks_the_query() -> None:
    assert page_params({}) == (None, None, 20)
    assert page_params({"after_id": "x", "limit": "5"}) == (None, "x", 5)
    assert page_params({"before_id": "y", "limit": "1000"}) == ("y", None, 1000)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "0"}, "limit: Input should be greater than or equal to 1"),
        ({"limit": "1001"}, "less than or equal to 1000"),
        ({"limit": "ten"}, "limit: Input should be a valid integer"),
        ({"before_id": "a", "after_id": "b"}, "cannot both be set"),
    ],
)
def test_page_params_refuses_bad_queries(query: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        page_params(query)
