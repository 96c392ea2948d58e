"""What the database commands share: loading settings, opening the (upgraded) store, failing cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from claudegate.config import Settings
    from claudegate.store import Store

__all__ = [
    "CliError",
    "ConfigOption",
    "JsonOption",
    "compact",
    "fail",
    "money",
    "print_table",
    "run_with_store",
]

T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="A TOML settings file (environment variables override it).", dir_okay=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class CliError(Exception):
    """A problem to report in one line, without a traceback."""


def print_table(
    table: Table, priorities: Sequence[int] | None = None, console: Console | None = None
) -> None:
    """Print a table that fits the terminal: no cell is wrapped or cut (a wrapped id, date or number is hard
    to read); when the table is too wide, whole columns go, highest ``priorities`` number first (0: always
    kept), and a line says which. Output to a pipe or file is not cut to rich's default 80 columns."""
    from rich.console import Console

    for column in table.columns:
        column.no_wrap = True
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=250)
    hidden: list[str] = []
    if priorities is not None:
        ranked = sorted(zip(table.columns, priorities, strict=True), key=lambda pair: -pair[1])
        for column, priority in ranked:
            if priority == 0 or _table_width(table) <= console.width:
                break
            table.columns.remove(column)
            hidden.append(str(column.header))
    console.print(table)
    if hidden:
        console.print(
            f"[dim]Not shown, for width: {', '.join(reversed(hidden))} (a wider terminal or --json shows "
            "them).[/dim]"
        )


def _table_width(table: Table) -> int:
    """Columns the table takes: each column's widest cell or header, a space either side and a border."""
    widths = [
        max([len(str(column.header)), *(len(str(cell)) for cell in column.cells)]) for column in table.columns
    ]
    return sum(width + 3 for width in widths) + 1


def compact(number: float) -> str:
    """A count for a table column: ``9,999``, ``12.3k``, ``4.56M``, ``1.20B`` (--json has the exact one)."""
    size = abs(number)
    if size < 10_000:
        return f"{number:,.0f}"
    for limit, suffix in ((1e6, "k"), (1e9, "M"), (1e12, "B")):
        scaled = number / (limit / 1000)
        if size < limit and round(abs(scaled)) < 1000:
            return f"{scaled:.3g}{suffix}" if abs(scaled) < 100 else f"{scaled:.0f}{suffix}"
    return f"{number / 1e12:.0f}T"


def money(amount: float) -> str:
    """Dollars for a table column: cents from a dollar up, four decimals below."""
    return f"{amount:,.4f}" if abs(amount) < 1 else f"{amount:,.2f}"


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def run_with_store(config_file: Path | None, action: Callable[[Store, Settings], Awaitable[T]]) -> T:
    """Run ``action`` against the configured database, after bringing its schema up to date."""
    # The store pulls in SQLAlchemy; importing it here keeps `claudegate --help` and other commands fast.
    from sqlalchemy.exc import SQLAlchemyError

    from claudegate.config import ConfigError, Settings
    from claudegate.store import Store, StoreError

    try:
        settings = Settings.load(config_file)
    except ConfigError as exc:
        fail(str(exc))

    async def main() -> T:
        store = await Store.open(settings.database_url)
        try:
            return await action(store, settings)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (CliError, StoreError) as exc:
        fail(str(exc))
    except (SQLAlchemyError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(f"cannot use the database at {settings.database_url_redacted}: {reason}")
