"""The start of a usage report (``since``, ``until``): dates, times and spans back from now."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from claudegate.store.render import parse_since

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def test_a_span_counts_back_from_now() -> None:
    assert parse_since("7d", now=NOW) == datetime(2026, 11, 8, 12, 0, tzinfo=UTC)
    assert parse_since("12h", now=NOW) == datetime(2026, 11, 15, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("span", ["999999999d", "99999999999999999999h"])
def test_a_span_further_back_than_any_date_is_refused_as_bad_input(span: str) -> None:
    # ValueError is what the admin API answers with a 400; anything else would be a 500.
    with pytest.raises(ValueError, match="shorter span"):
        parse_since(span, now=NOW)
