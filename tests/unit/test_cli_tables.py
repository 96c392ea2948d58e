"""Tables at 80 columns: whole cells, the columns that matter most, and a line saying what was left out."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from claudegate.cli._store import compact, money, print_table


def _render(priorities: list[int], width: int) -> str:
    table = Table("id", "organisation", "status", "created", "tokens per minute")
    for number in range(3):
        table.add_row(str(number), f"an-organisation-{number}", "active", "2026-11-22 10:15", "2,000,000")
    out = io.StringIO()
    print_table(table, priorities, Console(file=out, width=width, force_terminal=False))
    return out.getvalue()


def test_a_narrow_terminal_drops_the_least_important_columns_whole() -> None:
    text = _render([0, 0, 0, 2, 1], width=60)
    assert "an-organisation-2" in text
    assert "…" not in text
    assert "created" not in text.splitlines()[1]
    assert "tokens per minute" in text.splitlines()[1]
    assert "Not shown, for width: created" in text


def test_a_wide_terminal_shows_every_column() -> None:
    text = _render([0, 0, 0, 2, 1], width=120)
    assert "created" in text
    assert "Not shown" not in text


def test_compact_numbers_keep_three_figures() -> None:
    assert [compact(n) for n in (7, 9_999, 12_345, 999_999, 1_234_567, 98_765_432_100)] == [
        "7",
        "9,999",
        "12.3k",
        "1M",
        "1.23M",
        "98.8B",
    ]
    assert [money(x) for x in (0.000123, 0.5, 12.345, 12_345.6)] == ["0.0001", "0.5000", "12.35", "12,345.60"]
